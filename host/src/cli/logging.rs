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
    /// Log format: `text` or `json` (JSON lines). Default: text, or the config file's
    /// `log_format`.
    #[arg(long, global = true, value_parser = parse_format)]
    pub log_format: Option<LogFormat>,
    /// The same as `--log-format json`.
    #[arg(long, global = true, hide = true)]
    pub log_json: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines with `key=value` fields.
    Text,
    /// One JSON object a line.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            other => Err(format!("`{other}`: expected text or json")),
        }
    }
}

fn parse_format(text: &str) -> Result<LogFormat, String> {
    text.parse()
}

/// Installs the global subscriber. Safe to call once per process.
pub fn init(args: &LogArgs) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::cli::live_line::Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if args.log_json || args.log_format == Some(LogFormat::Json) {
        builder.json().init();
    } else {
        builder.init();
    }
}
