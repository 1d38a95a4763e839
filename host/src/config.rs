//! A pipeline's validated configuration: what the CLI (or a config file)
//! says, checked once, so the rest of the host never sees a bad value.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kinesis_producer::{ProducerConfig, ProducerError};
use thiserror::Error;
use url::Url;

use crate::checkpoint::ResumePolicy;
use crate::cli::{Format, RunArgs};
use crate::filter::FilterLimits;
use crate::filter_stage::OnFilterError;
use crate::net::{Origin, ProxySettings, TlsSettings};
use crate::sink::KinesisOptions;

/// A configuration value that cannot be used, with the flag it came from.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("invalid --url `{url}`: {reason}")]
    Url { url: String, reason: String },
    #[error("invalid --header `{0}`: expected `Name: value`")]
    Header(String),
    #[error("invalid --sink `{0}`: expected `file:DIR`, `stdout` or `kinesis:STREAM`")]
    Sink(String),
    #[error("invalid Kinesis settings: {0}")]
    Kinesis(String),
    #[error("invalid --filter-config `{0}`: expected `key=value`")]
    FilterConfig(String),
    #[error("invalid --name `{0}`: use letters, digits, `-` and `_` only")]
    Name(String),
    #[error("invalid --{flag}: {reason}")]
    Value { flag: &'static str, reason: String },
    #[error("invalid TLS settings: {0}")]
    Tls(String),
}

/// Where records go.
#[derive(Debug, Clone)]
pub enum SinkSpec {
    /// Newline-delimited files under a directory (the embedded default).
    File(PathBuf),
    /// Newline-delimited records on standard output.
    Stdout,
    /// A Kinesis data stream.
    Kinesis(Box<crate::sink::KinesisOptions>),
}

/// Which filter component runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterSpec {
    /// One of the components embedded in the binary.
    Builtin(String),
    /// A component file.
    File(PathBuf),
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
    pub name: String,
    pub url: Url,
    pub headers: Vec<(String, String)>,
    pub types: Vec<String>,
    pub format: Format,
    pub sink: SinkSpec,
    pub max_event_bytes: u64,
    pub idle_timeout: Duration,
    pub connect_timeout: Duration,
    pub filter: FilterSpec,
    pub filter_config: Vec<(String, String)>,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub batch_max_events: u32,
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
    /// How long shutdown may take to deliver what is buffered.
    pub shutdown_timeout: Duration,
    /// Partition keys of unkeyed records.
    pub partition_key: crate::partition::KeyStrategy,
    /// Where the admin API listens, if anywhere.
    pub admin: Option<std::net::SocketAddr>,
    /// TLS trust, proxies, redirects and the User-Agent.
    pub network: NetworkConfig,
    /// Whether a restart resumes from the checkpoint.
    pub resume: ResumePolicy,
    /// Streams besides the sink's own that the filter may send records to.
    pub allowed_streams: Vec<String>,
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
}

impl PipelineConfig {
    /// Validates the flags of `sse-ingest run`.
    pub fn from_run_args(args: &RunArgs) -> Result<Self, ConfigError> {
        let url = parse_url(&args.url)?;
        let headers = args
            .headers
            .iter()
            .map(|h| parse_header(h))
            .collect::<Result<Vec<_>, _>>()?;
        let filter_config = args
            .filter_config
            .iter()
            .map(|kv| {
                kv.split_once('=')
                    .filter(|(k, _)| !k.trim().is_empty())
                    .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                    .ok_or_else(|| ConfigError::FilterConfig(kv.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let filter = if args.filter.ends_with(".wasm") || args.filter.contains('/') {
            FilterSpec::File(PathBuf::from(&args.filter))
        } else {
            FilterSpec::Builtin(args.filter.clone())
        };
        if args.name.is_empty()
            || !args
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConfigError::Name(args.name.clone()));
        }
        if args.max_event_bytes < 1024 {
            return Err(ConfigError::Value {
                flag: "max-event-bytes",
                reason: "must be at least 1024".into(),
            });
        }
        if args.idle_timeout_ms == 0 || args.connect_timeout_ms == 0 {
            return Err(ConfigError::Value {
                flag: "idle-timeout-ms / --connect-timeout-ms",
                reason: "must be greater than 0".into(),
            });
        }
        if args.reconnect_min_ms < 10 {
            return Err(ConfigError::Value {
                flag: "reconnect-min-ms",
                reason: "must be at least 10, or a server's `retry: 0` becomes a tight loop".into(),
            });
        }
        if args.watch && !matches!(filter, FilterSpec::File(_)) {
            return Err(ConfigError::Value {
                flag: "watch",
                reason: "needs --filter FILE.wasm".into(),
            });
        }
        if args.filter_memory_mib < 2 || args.filter_cpu_budget_ms == 0 {
            return Err(ConfigError::Value {
                flag: "filter-memory-mib / --filter-cpu-budget-ms",
                reason: "a filter needs at least 2 MiB and 1 ms".into(),
            });
        }
        if args.batch_max_events == 0 {
            return Err(ConfigError::Value {
                flag: "batch-max-events",
                reason: "must be greater than 0".into(),
            });
        }
        Ok(Self {
            name: args.name.clone(),
            url,
            headers,
            types: args
                .types
                .iter()
                .filter(|t| !t.is_empty())
                .cloned()
                .collect(),
            format: args.format,
            sink: match parse_sink(&args.sink)? {
                SinkTarget::File(dir) => SinkSpec::File(dir),
                SinkTarget::Stdout => SinkSpec::Stdout,
                SinkTarget::Kinesis(stream) => SinkSpec::Kinesis(Box::new(KinesisOptions {
                    region: args.region.clone(),
                    endpoint_url: args.endpoint_url.clone(),
                    http: aws_http_settings(args)?,
                    producer: producer_config(stream, args)?,
                })),
            },
            shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
            max_event_bytes: args.max_event_bytes,
            idle_timeout: Duration::from_millis(args.idle_timeout_ms),
            connect_timeout: Duration::from_millis(args.connect_timeout_ms),
            filter,
            filter_config,
            state_dir: args.state_dir.clone(),
            cache_dir: args
                .cache_dir
                .clone()
                .unwrap_or_else(|| args.state_dir.join("component-cache")),
            batch_max_events: args.batch_max_events,
            reconnect: ReconnectPolicy {
                enabled: !args.once,
                initial_delay: Duration::from_millis(args.reconnect_initial_ms),
                min_delay: Duration::from_millis(args.reconnect_min_ms),
                max_delay: Duration::from_millis(args.reconnect_max_ms.max(args.reconnect_min_ms)),
                reset_after: Duration::from_secs(30),
                fatal_statuses: args.fatal_statuses.clone(),
                fatal_content_type: !args.retry_wrong_content_type,
            },
            dedupe_window: args.dedupe_window,
            dead_letter_dir: match &args.dead_letter {
                None => args.state_dir.join("dead-letters"),
                Some(spec) => match parse_sink(spec)? {
                    SinkTarget::File(dir) => dir,
                    SinkTarget::Stdout | SinkTarget::Kinesis(_) => {
                        return Err(ConfigError::Value {
                            flag: "dead-letter",
                            reason: "dead letters go to files: use `file:DIR`".into(),
                        });
                    }
                },
            },
            on_filter_error: args.on_filter_error,
            rollback_batches: args.rollback_batches,
            filter_limits: FilterLimits {
                memory_bytes: args.filter_memory_mib.saturating_mul(1024 * 1024),
                cpu_budget: Duration::from_millis(args.filter_cpu_budget_ms),
            },
            watch: args.watch,
            admin: args.admin,
            partition_key: args.partition_key.clone(),
            network: network_config(args)?,
            resume: args.resume,
            allowed_streams: args.allow_streams.clone(),
        })
        .and_then(Self::check_allowed_streams)
        .and_then(Self::refuse_overlapping_outputs)
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

/// Loads the TLS files and checks the proxy, origins and User-Agent.
fn network_config(args: &RunArgs) -> Result<NetworkConfig, ConfigError> {
    let tls_settings = TlsSettings {
        ca_files: args.ca_files.clone(),
        client_identity: args.client_cert.clone().zip(args.client_key.clone()),
    };
    let tls = crate::net::tls::client_config(&tls_settings)
        .map_err(|error| ConfigError::Tls(error.to_string()))?;
    let proxy = ProxySettings {
        proxy: args.proxy.clone(),
        no_proxy: args.no_proxy.clone(),
    };
    proxy.validate().map_err(|reason| ConfigError::Value {
        flag: "proxy",
        reason,
    })?;
    let allowed_origins = args
        .allow_origins
        .iter()
        .map(|text| parse_origin(text))
        .collect::<Result<Vec<_>, _>>()?;
    if http::HeaderValue::from_str(&args.user_agent).is_err() || args.user_agent.trim().is_empty() {
        return Err(ConfigError::Value {
            flag: "user-agent",
            reason: "must be non-empty visible ASCII".into(),
        });
    }
    Ok(NetworkConfig {
        tls_settings,
        tls,
        proxy,
        allowed_origins,
        user_agent: args.user_agent.clone(),
    })
}

/// The AWS clients trust the same extra CAs and use the same proxies as the SSE connection.
fn aws_http_settings(args: &RunArgs) -> Result<kinesis_producer::HttpSettings, ConfigError> {
    let extra_ca_pem = args
        .ca_files
        .iter()
        .map(|path| {
            std::fs::read(path)
                .map_err(|error| ConfigError::Tls(format!("--ca-file {}: {error}", path.display())))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let (http_proxy, https_proxy, no_proxy) = ProxySettings {
        proxy: args.proxy.clone(),
        no_proxy: args.no_proxy.clone(),
    }
    .resolved();
    Ok(kinesis_producer::HttpSettings {
        extra_ca_pem,
        http_proxy,
        https_proxy,
        no_proxy,
    })
}

/// An `--allow-origin`: scheme, host and optional port, nothing else.
fn parse_origin(text: &str) -> Result<Origin, ConfigError> {
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
        url: text.to_string(),
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

fn parse_header(text: &str) -> Result<(String, String), ConfigError> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| ConfigError::Header(text.to_string()))?;
    let name = name.trim();
    let valid_name = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid_name {
        return Err(ConfigError::Header(text.to_string()));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Where `--sink` points, before the Kinesis options are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum SinkTarget {
    File(PathBuf),
    Stdout,
    Kinesis(String),
}

fn parse_sink(text: &str) -> Result<SinkTarget, ConfigError> {
    if text == "stdout" {
        return Ok(SinkTarget::Stdout);
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

/// The Kinesis producer's settings from the flags, checked now so that a bad value is a
/// usage error naming its flag rather than a failure after connecting.
fn producer_config(stream: String, args: &RunArgs) -> Result<ProducerConfig, ConfigError> {
    let mut config = ProducerConfig::new(stream);
    config.ordered = args.ordered;
    config.max_in_flight = args.max_in_flight;
    config.linger = Duration::from_millis(args.linger_ms);
    config.record_deadline = Duration::from_millis(args.record_deadline_ms);
    config.max_records_per_request = args.max_records_per_request;
    config.max_request_bytes = args.max_request_bytes;
    config.max_record_bytes = args.max_record_bytes;
    config.buffer_max_records = args.buffer_max_records;
    config.buffer_max_bytes = args.buffer_max_bytes;
    config.attempt_timeout = Duration::from_millis(args.attempt_timeout_ms);
    config.operation_timeout = Duration::from_millis(args.operation_timeout_ms);
    let record_limit = config
        .max_record_bytes
        .unwrap_or(kinesis_producer::DEFAULT_MAX_RECORD_BYTES);
    config.validate(record_limit).map_err(|error| match error {
        ProducerError::InvalidConfig(reason) => ConfigError::Kinesis(flag_names(&reason)),
        other => ConfigError::Kinesis(other.to_string()),
    })?;
    Ok(config)
}

/// The producer names its settings by field (`buffer_max_bytes`); the user set them by flag.
fn flag_names(message: &str) -> String {
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

    fn run_args(flags: &[&str]) -> RunArgs {
        use clap::Parser as _;
        let mut argv = vec!["sse-ingest", "run"];
        argv.extend_from_slice(flags);
        match crate::cli::Cli::try_parse_from(argv).map(|cli| cli.command) {
            Ok(crate::cli::Command::Run(args)) => *args,
            other => panic!("not a run command: {other:?}"),
        }
    }

    #[test]
    fn dead_letters_inside_the_sink_directory_are_refused_naming_both() {
        for (sink, dead) in [
            ("file:out", "file:out"),
            ("file:out", "file:./out/dead"),
            ("file:out/data", "file:out"),
        ] {
            let args = run_args(&["--sink", sink, "--dead-letter", dead]);
            let error = PipelineConfig::from_run_args(&args).expect_err("overlap refused");
            let text = error.to_string();
            assert!(text.starts_with("invalid --dead-letter:"), "{text}");
            assert!(text.contains("overlap"), "{text}");
        }
        let args = run_args(&["--sink", "file:out", "--dead-letter", "file:out-dead"]);
        assert!(PipelineConfig::from_run_args(&args).is_ok());
    }

    #[test]
    fn an_ftp_url_is_refused() {
        assert!(parse_url("ftp://example.org/").is_err());
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
