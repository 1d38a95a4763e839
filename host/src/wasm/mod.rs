//! The WebAssembly side: the engine, the built-in components, and the hosts of
//! the `source` and `filter` worlds (their `bindgen!` output lives with them).

pub mod compiled_filters;
pub mod components;
pub(crate) mod engine;
pub mod filter;
pub mod filter_harness;
pub mod sandbox;
pub mod source;
