//! Logs go to stderr, so that `--sink stdout` carries records and nothing else.

use std::io::IsTerminal as _;

use clap::Args;
use tracing_subscriber::EnvFilter;

/// Logging flags shared by every command.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log filter (tracing's EnvFilter syntax); `RUST_LOG` overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    /// Write logs as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
}

/// Installs the global subscriber. Safe to call once per process.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if args.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}
