//! A pipeline's validated configuration: what the CLI (or a config file)
//! says, checked once, so the rest of the host never sees a bad value.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use url::Url;

use crate::core::format::Format;
use crate::net::{Origin, ProxySettings, TlsSettings};
use crate::sink::SinkSpec;

mod secrets;
mod service;
pub mod shard;
pub mod sizing;
pub mod source_url;

pub use secrets::{Redactor, Secret};
pub use service::{AdminSettings, AdminTls, SHORT_TOKEN_BYTES, ServiceConfig};

/// A configuration value that cannot be used, with the flag it came from.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// `--url` is not an absolute http(s) URL with a host.
    #[error("invalid --url `{url}`: {reason}")]
    Url {
        /// The text given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `--header` is not `Name: value`.
    #[error("invalid --header `{0}`: expected `Name: value` (a token, then no control characters)")]
    Header(String),
    /// `--sink` names no known sink.
    #[error("invalid --sink `{0}`: expected `file:DIR`, `stdout`, `discard` or `kinesis:STREAM`")]
    Sink(String),
    /// A Kinesis producer setting is out of range.
    #[error("invalid Kinesis settings: {0}")]
    Kinesis(String),
    /// A `--filter-config` is not `key=value`.
    #[error("invalid --filter-config `{0}`: expected `key=value`")]
    FilterConfig(String),
    /// `--name` has characters that cannot go into paths and labels.
    #[error("invalid --name `{0}`: use letters, digits, `-` and `_` only")]
    Name(String),
    /// A flag's value is out of range or contradicts another.
    #[error("invalid --{flag}: {reason}")]
    Value {
        /// The flag, without `--`.
        flag: &'static str,
        /// Why the value cannot be used.
        reason: String,
    },
    /// A TLS file (`--ca-file`, `--client-cert`, `--client-key`) cannot be used.
    #[error("invalid TLS settings: {0}")]
    Tls(String),
}

impl ConfigError {
    /// The flag (without `--`) the error is about, when it is about one; a config file
    /// points at that key.
    pub fn flag(&self) -> Option<&str> {
        match self {
            Self::Url { .. } => Some("url"),
            Self::Header(_) => Some("header"),
            Self::Sink(_) => Some("sink"),
            Self::FilterConfig(_) => Some("filter-config"),
            Self::Name(_) => Some("name"),
            Self::Value { flag, .. } => Some(flag),
            Self::Kinesis(_) | Self::Tls(_) => None,
        }
    }
}

/// Which filter component runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterSpec {
    /// One of the components embedded in the binary.
    Builtin(String),
    /// A component file.
    File(PathBuf),
}

impl FilterSpec {
    /// `--filter` (or `swap --filter`, `test-filter FILTER`): a path when it ends in `.wasm`
    /// or contains a `/`, else a built-in name.
    pub fn parse(text: &str) -> Self {
        if text.ends_with(".wasm") || text.contains('/') {
            Self::File(PathBuf::from(text))
        } else {
            Self::Builtin(text.to_string())
        }
    }

    /// How logs and messages name it.
    pub fn label(&self) -> String {
        match self {
            Self::Builtin(name) => format!("built-in filter `{name}`"),
            Self::File(path) => format!("filter {}", path.display()),
        }
    }
}

/// A filter's `key=value` setting, as `--filter-config`, `test-filter` and the admin API
/// take it: split at the first `=`, the key trimmed and not empty, the value as it is.
pub fn parse_key_value(text: &str) -> Option<(String, String)> {
    text.split_once('=')
        .filter(|(key, _)| !key.trim().is_empty())
        .map(|(key, value)| (key.trim().to_string(), value.to_string()))
}

/// Whether a restart resumes from the checkpoint (`--resume`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumePolicy {
    /// Always start from the live edge.
    Never,
    /// Resume from a checkpoint of this stream; a checkpoint of another stream is not used
    /// (a warning names both URLs) and the pipeline starts from the live edge.
    Auto,
    /// Like `auto`, but a checkpoint of another stream stops the start.
    Require,
}

impl std::str::FromStr for ResumePolicy {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "never" => Ok(Self::Never),
            "auto" => Ok(Self::Auto),
            "require" => Ok(Self::Require),
            other => Err(format!("`{other}`: expected never, auto or require")),
        }
    }
}

/// What happens to a batch a filter fails on (outside a swap's probation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFilterError {
    /// Write the batch's events to the dead-letter output with the error; go on.
    DeadLetter,
    /// Restore the previous filter version (kept after a swap's probation too, so at any
    /// time) and re-run the batch on it; with none kept, dead-letter.
    Rollback,
    /// Stop the pipeline with the error (exit code 1).
    Stop,
}

/// The sandbox a filter runs in.
#[derive(Debug, Clone, Copy)]
pub struct FilterLimits {
    /// Linear memory a filter instance may grow to.
    pub memory_bytes: usize,
    /// CPU time one call (`init` or one batch) may take before it traps.
    pub cpu_budget: Duration,
}

impl Default for FilterLimits {
    fn default() -> Self {
        Self {
            memory_bytes: 64 * 1024 * 1024,
            cpu_budget: Duration::from_millis(500),
        }
    }
}

/// When and how the source reconnects (see `guest/source/src/reconnect.rs`).
#[derive(Debug, Clone)]
pub struct ReconnectPolicy {
    /// Whether to reconnect at all (`false` with `--once`).
    pub enabled: bool,
    /// First delay when the server sent no `retry:`.
    pub initial_delay: Duration,
    /// Floor for every delay (guards against `retry: 0`).
    pub min_delay: Duration,
    /// Cap of the exponential backoff.
    pub max_delay: Duration,
    /// A connection up this long resets the backoff.
    pub reset_after: Duration,
    /// Statuses that end the pipeline instead of reconnecting.
    pub fatal_statuses: Vec<u16>,
    /// Whether a wrong content type ends the pipeline.
    pub fatal_content_type: bool,
}

/// Everything one pipeline needs.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// The pipeline's name: in logs, metric labels, file names and the state directory.
    pub name: String,
    /// The SSE endpoint, as requested: without userinfo (which became an `Authorization`
    /// header), with any credentials in its query. Shown only as [`PipelineConfig::shown_url`].
    pub url: Url,
    /// Extra request headers, in order.
    pub headers: Vec<(String, String)>,
    /// SSE event types to keep; empty keeps all.
    pub types: Vec<String>,
    /// What a record holds.
    pub format: Format,
    /// Where records go.
    pub sink: SinkSpec,
    /// The largest event the parser buffers.
    pub max_event_bytes: u64,
    /// No byte for this long reconnects.
    pub idle_timeout: Duration,
    /// Limit for connecting (TCP, proxy, TLS) and for the response head.
    pub connect_timeout: Duration,
    /// The filter component.
    pub filter: FilterSpec,
    /// The filter's `key=value` configuration.
    pub filter_config: Vec<(String, String)>,
    /// Checkpoints (and, by default, the component cache and dead letters) live here.
    pub state_dir: PathBuf,
    /// Compiled components are cached here.
    pub cache_dir: PathBuf,
    /// Most events per batch from the source to the filter.
    pub batch_max_events: u32,
    /// Most bytes per batch (one larger event goes alone); see [`sizing`].
    pub batch_max_bytes: u64,
    /// When and how the source reconnects.
    pub reconnect: ReconnectPolicy,
    /// Recent event ids remembered for dropping replays (0 disables).
    pub dedupe_window: usize,
    /// Where dead letters are written.
    pub dead_letter_dir: PathBuf,
    /// What happens to a batch the filter fails on.
    pub on_filter_error: OnFilterError,
    /// Batches a swapped-in filter is on probation.
    pub rollback_batches: u32,
    /// The filter's sandbox.
    pub filter_limits: FilterLimits,
    /// Swap the filter file in whenever it changes.
    pub watch: bool,
    /// How long a stop (a signal, a reload) may take to deliver what is buffered.
    pub shutdown_timeout: Duration,
    /// At the end of a stream, how long the drain into the sink may go without a record
    /// acknowledged before it gives up on the rest.
    pub drain_stall_timeout: Duration,
    /// Partition keys of unkeyed records.
    pub partition_key: crate::core::partition::KeyStrategy,
    /// Where the admin API listens, if anywhere.
    pub admin: Option<std::net::SocketAddr>,
    /// TLS trust, proxies, redirects and the User-Agent.
    pub network: NetworkConfig,
    /// Whether a restart resumes from the checkpoint.
    pub resume: ResumePolicy,
    /// Streams besides the sink's own that the filter may send records to.
    pub allowed_streams: Vec<String>,
    /// The secrets its configuration expanded (kept out of checkpoints and messages).
    pub secrets: Redactor,
    /// At most one checkpoint write per this interval (`--checkpoint-interval-ms`).
    pub checkpoint_interval: Duration,
    /// Where checkpoints are kept (`--checkpoint-store`).
    pub checkpoint_store: CheckpointStoreSpec,
    /// When the file sink's and the dead letters' files are rolled (`--file-roll-bytes`,
    /// `--file-roll-interval-ms`).
    pub file_roll: crate::sink::FileRoll,
    /// At most this many bytes of dead letters (`--dead-letter-max-bytes`); when full, the
    /// pipeline waits for room instead of dropping any.
    pub dead_letter_max_bytes: u64,
    /// Every setting as given: what a reload compares to tell a changed pipeline from an
    /// unchanged one.
    pub fingerprint: Fingerprint,
}

/// The settings a pipeline was made from, compared by value (secrets included), never
/// printed: a reload restarts a pipeline whose settings changed, a rotated secret too.
/// `Debug` text is no fingerprint, since it shows secrets redacted.
#[derive(Clone)]
pub struct Fingerprint {
    given: Arc<dyn std::any::Any + Send + Sync>,
    same: fn(&dyn std::any::Any, &dyn std::any::Any) -> bool,
}

impl Fingerprint {
    /// The fingerprint of `given` (a front end's settings, e.g. `run`'s flags).
    pub fn of<T: PartialEq + Send + Sync + 'static>(given: T) -> Self {
        Self {
            given: Arc::new(given),
            same: |a, b| match (a.downcast_ref::<T>(), b.downcast_ref::<T>()) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            },
        }
    }
}

impl PartialEq for Fingerprint {
    fn eq(&self, other: &Self) -> bool {
        (self.same)(self.given.as_ref(), other.given.as_ref())
    }
}

impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fingerprint(..)")
    }
}

/// How a pipeline meets the network (`--ca-file`, `--client-cert`, `--proxy`,
/// `--allow-origin`, `--user-agent`), loaded and checked at start.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// The files the TLS configuration came from (the AWS clients trust the same CAs).
    pub tls_settings: TlsSettings,
    /// The loaded TLS client configuration of the SSE connection.
    pub tls: Arc<rustls::ClientConfig>,
    /// Proxy flags; unset ones fall back to the environment.
    pub proxy: ProxySettings,
    /// Origins besides the URL's own that redirects may lead to.
    pub allowed_origins: Vec<Origin>,
    /// The User-Agent request header.
    pub user_agent: String,
    /// Whether the `--header`s go on to another origin after a redirect.
    pub keep_headers_on_redirect: bool,
}

impl PipelineConfig {
    /// The URL as logs, the admin API, the filter's context and records show it: credential
    /// query values hidden (`net::shown`), and any secret this pipeline's configuration
    /// expanded (`${ENV}`, `@file`) redacted wherever it sits.
    pub fn shown_url(&self) -> String {
        self.secrets.redact(&crate::net::shown_url(&self.url))
    }

    /// The streams a routing filter may send to: the Kinesis sink's own and
    /// `--allow-stream`; none when no other stream is allowed, so that a filter importing
    /// the `routing` interface is refused there.
    pub fn routable_streams(&self) -> Vec<String> {
        match &self.sink {
            SinkSpec::Kinesis(options) if !self.allowed_streams.is_empty() => {
                std::iter::once(options.producer.stream.clone())
                    .chain(self.allowed_streams.iter().cloned())
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Checks what no single flag can: how the settings fit together. Every front end
    /// (flags, properties) ends here.
    pub fn validate(self) -> Result<Self, ConfigError> {
        self.check_allowed_streams()?
            .check_filter_memory()?
            .refuse_overlapping_outputs()
    }

    /// A filter given less memory than the largest batch needs would fail on events the
    /// parser admits: refused at start, naming both figures.
    fn check_filter_memory(self) -> Result<Self, ConfigError> {
        let needed = sizing::filter_memory_needed(self.max_event_bytes, self.batch_max_bytes);
        let given = self.filter_limits.memory_bytes as u64;
        if given < needed {
            return Err(ConfigError::Value {
                flag: "filter-memory-mib",
                reason: format!(
                    "{} MiB is below the {} MiB that the largest batch needs (--max-event-bytes \
                     {}, --batch-max-bytes {}): raise it, or lower those",
                    given / (1024 * 1024),
                    sizing::mib_rounded_up(needed),
                    self.max_event_bytes,
                    self.batch_max_bytes,
                ),
            });
        }
        Ok(self)
    }

    /// `--allow-stream` names Kinesis streams, and only a Kinesis sink has streams.
    fn check_allowed_streams(self) -> Result<Self, ConfigError> {
        if self.allowed_streams.is_empty() {
            return Ok(self);
        }
        if !matches!(self.sink, SinkSpec::Kinesis(_)) {
            return Err(ConfigError::Value {
                flag: "allow-stream",
                reason: "needs --sink kinesis:STREAM: the file and stdout sinks write one output"
                    .into(),
            });
        }
        for name in &self.allowed_streams {
            if parse_sink(&format!("kinesis:{name}")).is_err() {
                return Err(ConfigError::Value {
                    flag: "allow-stream",
                    reason: format!(
                        "`{name}` is not a Kinesis stream name (1 to 128 letters, digits, `_`, `.`, `-`)"
                    ),
                });
            }
        }
        Ok(self)
    }

    /// Dead letters inside the sink's directory (or the sink's inside theirs) would look
    /// like data to whoever reads the sink.
    fn refuse_overlapping_outputs(self) -> Result<Self, ConfigError> {
        if let SinkSpec::File(sink) = &self.sink {
            let (sink_abs, dead_abs) = (absolute(sink), absolute(&self.dead_letter_dir));
            if sink_abs.starts_with(&dead_abs) || dead_abs.starts_with(&sink_abs) {
                return Err(ConfigError::Value {
                    flag: "dead-letter",
                    reason: format!(
                        "{} and the sink directory {} overlap: dead letters would look like \
                         data to whoever reads the sink; give them separate directories",
                        self.dead_letter_dir.display(),
                        sink.display()
                    ),
                });
            }
        }
        Ok(self)
    }
}

/// `path` made absolute and without `.` or `..` parts, for comparing where two flags point.
fn absolute(path: &std::path::Path) -> PathBuf {
    let full = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut clean = PathBuf::new();
    for part in full.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    clean
}

/// An `--allow-origin`: scheme, host and optional port, nothing else.
pub fn parse_origin(text: &str) -> Result<Origin, ConfigError> {
    let invalid = |reason: &str| ConfigError::Value {
        flag: "allow-origin",
        reason: format!("`{text}` {reason}"),
    };
    let url = Url::parse(text).map_err(|_| invalid("is not a URL like https://host:port"))?;
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("is not an origin: give only scheme, host and port"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("must not carry credentials"));
    }
    Origin::of_url(&url).ok_or_else(|| invalid("is not an http or https origin"))
}

/// An absolute http(s) URL with a host.
pub fn parse_url(text: &str) -> Result<Url, ConfigError> {
    let invalid = |reason: String| ConfigError::Url {
        // The text may hold a password: quoted as it would be shown.
        url: crate::net::shown::shown_url_text(text),
        reason,
    };
    let url = Url::parse(text).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("no host".to_string()));
    }
    Ok(url)
}

/// A `Name: value` header with a valid name.
pub fn parse_header(text: &str) -> Result<(String, String), ConfigError> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| ConfigError::Header(text.to_string()))?;
    let name = name.trim();
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    let value = value.trim();
    // RFC 9110 §5.5: no control characters but tab in a field value (a line break would
    // start another header).
    let valid_value = value.bytes().all(|b| b == b'\t' || !b.is_ascii_control());
    if !valid_name || !valid_value {
        return Err(ConfigError::Header(text.to_string()));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Where `--sink` points, before the Kinesis options are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkTarget {
    /// `file:DIR`.
    File(PathBuf),
    /// `stdout`.
    Stdout,
    /// `discard`.
    Discard,
    /// `kinesis:STREAM`.
    Kinesis(String),
}

/// Where a pipeline's checkpoints are kept (`--checkpoint-store`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointStoreSpec {
    /// `file`: `STATE_DIR/pipelines/NAME/checkpoint.json` (the default).
    File,
    /// `dynamodb:TABLE`: an item per pipeline, written conditionally on its version (boxed:
    /// the table's settings are large beside `File`).
    DynamoDb(Box<DynamoDbTable>),
}

/// A DynamoDB checkpoint table and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DynamoDbTable {
    /// The table (string partition key `pipeline`).
    pub table: String,
    /// `--region`; else the standard AWS chain decides.
    pub region: Option<String>,
    /// `--checkpoint-endpoint-url`, e.g. a local DynamoDB server.
    pub endpoint_url: Option<String>,
    /// Trust and proxies (the same as the Kinesis client's).
    pub http: kinesis_producer::HttpSettings,
    /// `--checkpoint-namespace`: items are keyed `NAMESPACE/NAME`, so deployments that
    /// share the table never take each other's pipelines.
    pub namespace: Option<String>,
    /// `--checkpoint-heartbeat-ms`: how often an owner checks that it still holds its items.
    pub heartbeat: std::time::Duration,
}

/// The table of `--checkpoint-store dynamodb:TABLE`, `None` for `file`. DynamoDB's table
/// names: 3 to 255 of letters, digits, `_`, `-` and `.`.
pub fn parse_checkpoint_store(text: &str) -> Result<Option<String>, ConfigError> {
    if text == "file" {
        return Ok(None);
    }
    let refused = |reason: &str| ConfigError::Value {
        flag: "checkpoint-store",
        reason: format!("`{text}`: {reason}"),
    };
    let Some(table) = text.strip_prefix("dynamodb:") else {
        return Err(refused("expected `file` or `dynamodb:TABLE`"));
    };
    let valid = (3..=255).contains(&table.len())
        && table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if valid {
        Ok(Some(table.to_string()))
    } else {
        Err(refused(
            "a DynamoDB table name is 3 to 255 letters, digits, `_`, `-` or `.`",
        ))
    }
}

/// What `--sink` (or `--dead-letter`) points at.
pub fn parse_sink(text: &str) -> Result<SinkTarget, ConfigError> {
    if text == "stdout" {
        return Ok(SinkTarget::Stdout);
    }
    if text == "discard" {
        return Ok(SinkTarget::Discard);
    }
    if let Some(stream) = text.strip_prefix("kinesis:") {
        let valid = !stream.is_empty()
            && stream.len() <= 128
            && stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        return if valid {
            Ok(SinkTarget::Kinesis(stream.to_string()))
        } else {
            Err(ConfigError::Sink(text.to_string()))
        };
    }
    match text.strip_prefix("file:") {
        Some(dir) if !dir.is_empty() => Ok(SinkTarget::File(PathBuf::from(dir))),
        _ => Err(ConfigError::Sink(text.to_string())),
    }
}

/// The producer names its settings by field (`buffer_max_bytes`); the user set them by flag.
pub fn flag_names(message: &str) -> String {
    const FIELDS: [(&str, &str); 9] = [
        ("max_records_per_request", "--max-records-per-request"),
        ("max_request_bytes", "--max-request-bytes"),
        ("max_record_bytes", "--max-record-bytes"),
        ("buffer_max_records", "--buffer-max-records"),
        ("buffer_max_bytes", "--buffer-max-bytes"),
        ("max_in_flight", "--max-in-flight"),
        ("attempt_timeout", "--attempt-timeout-ms"),
        ("operation_timeout", "--operation-timeout-ms"),
        ("record limit", "record limit (--max-record-bytes)"),
    ];
    FIELDS
        .iter()
        .fold(message.to_owned(), |text, (field, flag)| {
            text.replace(field, flag)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_stores_are_file_or_a_valid_dynamodb_table() {
        assert_eq!(parse_checkpoint_store("file").ok(), Some(None));
        assert_eq!(
            parse_checkpoint_store("dynamodb:sse-ingest.checkpoints_1").ok(),
            Some(Some("sse-ingest.checkpoints_1".to_string()))
        );
        for refused in [
            "dynamodb:",
            "dynamodb:ab",
            "dynamodb:a b c",
            "s3:bucket",
            "",
        ] {
            let error = parse_checkpoint_store(refused).expect_err(refused);
            assert_eq!(error.flag(), Some("checkpoint-store"), "{refused}");
        }
    }

    #[test]
    fn a_relative_url_is_refused() {
        assert!(matches!(
            parse_url("/v2/stream"),
            Err(ConfigError::Url { .. })
        ));
    }

    #[test]
    fn an_allowed_origin_is_scheme_host_and_port_only() {
        let origin = parse_origin("https://cdn.example.org:8443").expect("an origin");
        assert_eq!(origin.to_string(), "https://cdn.example.org:8443");
        assert!(parse_origin("https://cdn.example.org/path").is_err());
        assert!(parse_origin("ftp://cdn.example.org").is_err());
        assert!(parse_origin("cdn.example.org").is_err());
    }

    #[test]
    fn an_ftp_url_is_refused() {
        assert!(parse_url("ftp://example.org/").is_err());
    }

    #[test]
    fn a_header_value_with_a_line_break_is_refused() {
        assert!(parse_header("X-Key: a\nInjected: b").is_err());
        assert!(parse_header("X-Key: a\tb").is_ok(), "a tab is allowed");
    }

    #[test]
    fn a_header_needs_a_colon() {
        assert!(parse_header("Authorization Bearer x").is_err());
        assert_eq!(
            parse_header("User-Agent:  sse-ingest ").ok(),
            Some(("User-Agent".to_string(), "sse-ingest".to_string()))
        );
    }

    #[test]
    fn sinks_are_file_stdout_or_kinesis() {
        assert_eq!(parse_sink("stdout").ok(), Some(SinkTarget::Stdout));
        assert_eq!(
            parse_sink("kinesis:wiki-edits").ok(),
            Some(SinkTarget::Kinesis("wiki-edits".into()))
        );
        assert!(parse_sink("kinesis:").is_err());
        assert!(parse_sink("kinesis:bad/name").is_err());
        assert_eq!(
            parse_sink("file:out").ok(),
            Some(SinkTarget::File("out".into()))
        );
        assert!(parse_sink("file:").is_err());
        assert!(parse_sink("s3://bucket").is_err());
    }
}
