//! The sse-ingest host: wasmtime embedding, outbound HTTP policy, pipeline,
//! sinks, checkpoints and the CLI's commands.
//!
//! Data flows `source component → pipeline → filter component → sink`; see
//! `docs/architecture.md` for the why of each seam.

pub mod admin;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod components;
pub mod config;
pub mod dead_letter;
pub mod dedupe;
pub mod engine;
pub mod exit;
pub mod filter;
pub mod filter_harness;
pub mod filter_stage;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod partition;
pub mod pipeline;
pub mod record;
pub mod seed;
pub mod sink;
pub mod source;
pub mod state_lock;
pub mod stream_rule;
pub mod watch;
