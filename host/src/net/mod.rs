//! The network as users have it: the source component's HTTP requests leave through here.
//!
//! [`OutboundClient`] is the `send_request` hook of wasmtime-wasi-http: it enforces the
//! pipeline's [`OutboundPolicy`] (allowed origins, timeouts), trusts what [`tls`] loads,
//! goes through what [`proxy`] selects, follows redirects within the allow-list, and turns
//! every failure into a [`Failure`]: one sentence and a stable class.

pub mod aws;
mod body;
mod client;
mod connect;
pub mod failure;
pub mod policy;
pub mod proxy;
pub mod shown;
pub mod tls;

pub use client::OutboundClient;
pub use failure::FailureClass;
pub use policy::{Origin, OutboundPolicy};
pub use proxy::{ProxyRoutes, ProxySettings};
pub use shown::shown_url;
pub use tls::{TlsSettings, install_crypto_provider};
