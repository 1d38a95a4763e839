//! The sse-ingest host: wasmtime embedding, outbound HTTP, pipeline, sinks,
//! checkpoints and the CLI's commands.
//!
//! Data flows `source component → pipeline → filter component → sink`; see
//! `docs/architecture.md` for the why of each seam. The modules are grouped by
//! role, and dependencies point one way, from the top of this list to the bottom:
//!
//! | group | what |
//! |---|---|
//! | [`cli`] | argument parsing, the commands, the seed-properties import, exit codes, logging set-up |
//! | `service` | a process's pipelines side by side: shared components, reload, exit outcomes |
//! | `admin` | the admin HTTP API and the filter file watch |
//! | `pipeline` | one pipeline: filter stage, replay window, checkpoints, dead letters, the stream rule, the state lock |
//! | [`wasm`] | the wasmtime engine, the built-in components, the source and filter hosts, the filter test harness |
//! | `config` | the validated configuration of a pipeline |
//! | `sink` | file, stdout and Kinesis sinks |
//! | `net` | the source's outbound HTTP client: policy, TLS, proxies, redirects, failures |
//! | `core` | what several groups share: records, metrics, partition keys, the record format |

#![deny(missing_docs)]

// Public: what the binary (`cli`), the integration tests and the benches (`wasm`) use.
// Everything else is the crate's own.
pub mod cli;
pub mod wasm;

pub(crate) mod admin;
pub(crate) mod config;
pub(crate) mod core;
pub(crate) mod net;
pub(crate) mod pipeline;
pub(crate) mod service;
pub(crate) mod sink;

pub use net::install_crypto_provider;
