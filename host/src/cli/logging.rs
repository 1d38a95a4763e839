//! Logs go to stderr, so that `--sink stdout` carries records and nothing else.
//!
//! `--log-level debug` is for debugging sse-ingest, not its dependencies: a bare level
//! applies to the product's own crates ([`OWN_TARGETS`], guest logs included: they are
//! written from `sse_ingest`), while every other crate stays at `info` at most. At `debug`,
//! Cranelift and wasmtime alone write tens of thousands of lines while compiling one
//! component, burying the lines asked for. `RUST_LOG`, and any directive naming a target,
//! reach dependencies as written.
//!
//! One event is one line: in text logs, control characters in field values (a line break
//! in a swap's `label`, an escape sequence in a server's error) are written escaped
//! ([`EscapedFields`]), so no value can forge a log line or drive the terminal. JSON logs
//! escape them by being JSON.

use std::fmt::{self, Write as _};
use std::io::IsTerminal as _;

use clap::Args;
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::ParseError;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::Writer;

/// Logging flags shared by every command.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Log level of sse-ingest's own crates (dependencies stay at `info` at most), or
    /// tracing's EnvFilter syntax (`debug,hyper=trace`); `RUST_LOG` overrides it. Default:
    /// `info`, or the config file's `log_level`.
    #[arg(long, global = true)]
    pub log_level: Option<String>,
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

/// The crates of this workspace that log: a bare `--log-level` applies to these.
pub const OWN_TARGETS: &[&str] = &["sse_ingest", "kinesis_producer", "sse_parser"];

/// The level when neither `--log-level`, the config file nor `RUST_LOG` gives one.
const DEFAULT_LEVEL: &str = "info";

/// `--log-level` as EnvFilter directives: each bare level (`debug`) becomes that level for
/// [`OWN_TARGETS`] and the less verbose of it and `info` for everything else; directives that
/// name a target are kept as written (more specific, so they win).
pub fn directives(log_level: &str) -> String {
    let mut out = Vec::new();
    for directive in log_level.split(',').map(str::trim) {
        match directive.parse::<LevelFilter>() {
            Ok(level) if !directive.is_empty() => {
                out.push(level.min(LevelFilter::INFO).to_string().to_lowercase());
                for target in OWN_TARGETS {
                    out.push(format!("{target}={}", level.to_string().to_lowercase()));
                }
            }
            _ if directive.is_empty() => {}
            _ => out.push(directive.to_string()),
        }
    }
    out.join(",")
}

/// A `--log-level` (or config `log_level`) that is no filter.
#[derive(Debug, thiserror::Error)]
#[error("invalid log level `{given}`: {reason}")]
pub struct InvalidLogLevel {
    given: String,
    reason: ParseError,
}

/// The filter for `log_level`, or why it is not one.
pub fn filter(log_level: &str) -> Result<EnvFilter, InvalidLogLevel> {
    EnvFilter::try_new(directives(log_level)).map_err(|reason| InvalidLogLevel {
        given: log_level.to_string(),
        reason,
    })
}

/// Installs the global subscriber. Safe to call once per process.
pub fn init(args: &LogArgs) {
    let level = args.log_level.as_deref().unwrap_or(DEFAULT_LEVEL);
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| filter(level))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LEVEL));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| crate::cli::live_line::Stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if args.log_json || args.log_format == Some(LogFormat::Json) {
        builder.json().init();
    } else {
        builder.fmt_fields(EscapedFields).init();
    }
}

/// The text format's fields as tracing-subscriber writes them (`message`, then
/// `name=value`; strings quoted), with every control character escaped (`\n`, `\u{1b}`).
/// The default escapes only what a `Debug` value escapes itself: a `%` field is written
/// as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'writer>, fields: R) -> fmt::Result {
        let mut visitor = EscapingVisitor {
            writer,
            result: Ok(()),
            empty: true,
        };
        fields.record(&mut visitor);
        visitor.result
    }
}

struct EscapingVisitor<'writer> {
    writer: Writer<'writer>,
    result: fmt::Result,
    empty: bool,
}

impl Visit for EscapingVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let name = field.name();
        if self.result.is_err() || name.starts_with("log.") {
            return;
        }
        let separator = if self.empty { "" } else { " " };
        self.empty = false;
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = if name == "message" {
            write!(self.writer, "{separator}")
        } else {
            write!(self.writer, "{separator}{name}=")
        }
        .and_then(|()| write!(Escaping(&mut self.writer), "{value:?}"));
    }
}

/// Writes through, with control characters escaped.
struct Escaping<'a, 'writer>(&'a mut Writer<'writer>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, text: &str) -> fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(char::is_control) {
            self.0.write_str(&rest[..at])?;
            let Some(control) = rest[at..].chars().next() else {
                break;
            };
            match control {
                '\n' => self.0.write_str("\\n")?,
                '\r' => self.0.write_str("\\r")?,
                '\t' => self.0.write_str("\\t")?,
                other => write!(self.0, "\\u{{{:x}}}", u32::from(other))?,
            }
            rest = &rest[at + control.len_utf8()..];
        }
        self.0.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What the text format writes for the events `log` emits.
    fn logged(log: impl FnOnce()) -> String {
        let buffer = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || SharedBuffer(Arc::clone(&sink)))
            .with_ansi(false)
            .without_time()
            .with_target(false)
            .fmt_fields(EscapedFields)
            .finish();
        tracing::subscriber::with_default(subscriber, log);
        let bytes = buffer.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut buffer) = self.0.lock() {
                buffer.extend_from_slice(bytes);
            }
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_label_with_a_line_break_stays_on_one_line() {
        let label = "mine\n2030-01-01T00:00:00Z  INFO filter swapped in pipeline=p version=9";
        let text =
            logged(|| tracing::warn!(pipeline = %"p", filter = %label, "filter swap refused"));
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r"filter=mine\n2030-01-01"), "{text}");
        assert!(text.contains("filter swap refused pipeline=p"), "{text}");
    }

    #[test]
    fn escapes_and_line_breaks_are_escaped_in_messages_and_debug_fields_too() {
        let text = logged(|| {
            tracing::info!(reason = ?"a\rb", "red \u{1b}[31m\ndone");
        });
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains(r"red \u{1b}[31m\ndone"), "{text}");
        assert!(text.contains(r#"reason="a\rb""#), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn a_bare_level_is_for_our_crates_and_dependencies_stay_at_info_at_most() {
        assert_eq!(
            directives("debug"),
            "info,sse_ingest=debug,kinesis_producer=debug,sse_parser=debug"
        );
        assert_eq!(
            directives("warn"),
            "warn,sse_ingest=warn,kinesis_producer=warn,sse_parser=warn"
        );
    }

    #[test]
    fn directives_naming_a_target_are_kept_as_written() {
        assert_eq!(
            directives("trace, hyper=debug"),
            "info,sse_ingest=trace,kinesis_producer=trace,sse_parser=trace,hyper=debug"
        );
        assert_eq!(directives("cranelift=trace"), "cranelift=trace");
    }

    #[test]
    fn a_malformed_filter_is_refused_with_its_text() {
        let message = filter("sse_ingest=loud").unwrap_err().to_string();
        assert!(message.contains("`sse_ingest=loud`"), "{message}");
        assert!(filter("debug").is_ok());
    }
}
