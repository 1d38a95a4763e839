//! What a process runs: its pipelines and the settings they share.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{PipelineConfig, Redactor, Secret};

/// A token shorter than this gets a warning at start.
pub const SHORT_TOKEN_BYTES: usize = 16;

/// The admin API's settings (`[admin]` in a config file, `--admin` as a flag).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminSettings {
    /// Where it listens; none: no admin API.
    pub address: Option<SocketAddr>,
    /// The bearer token every endpoint but `/health`, `/healthz` and `/ready` (and
    /// `/metrics` when public) requires.
    pub token: Option<Secret>,
    /// Serve a non-loopback address without a token (an operator's explicit choice).
    pub allow_unauthenticated: bool,
    /// `/metrics` answers without the token (for a scraper that cannot send one).
    pub metrics_public: bool,
    /// Serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<AdminTls>,
}

/// The admin API's certificate (`tls_cert`, `tls_key` in `[admin]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminTls {
    /// The certificate chain, PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

impl AdminSettings {
    /// An address off loopback must have a token, unless the operator said otherwise.
    pub fn check(&self) -> Result<(), String> {
        match self.address {
            Some(address)
                if !address.ip().is_loopback()
                    && self.token.is_none()
                    && !self.allow_unauthenticated =>
            {
                Err(format!(
                    "the admin API on {address} (off loopback) needs a token (`token` in \
                     `[admin]`, or --admin-token), or an explicit `allow_unauthenticated = true`"
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Everything one process runs: from a config file, or one pipeline from flags.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// The pipelines, with unique names.
    pub pipelines: Vec<PipelineConfig>,
    /// The admin API.
    pub admin: AdminSettings,
    /// How often each pipeline logs its rate line; none: never.
    pub report_interval: Option<Duration>,
    /// The secrets the configuration expanded, to keep out of logs, errors and answers.
    pub redactor: Redactor,
}
