//! From `sse-ingest run`'s flags to the validated [`PipelineConfig`]: the one place
//! that knows both.

use std::time::Duration;

use kinesis_producer::{ProducerConfig, ProducerError};

use crate::cli::RunArgs;
use crate::config::{
    CheckpointStoreSpec, ConfigError, DynamoDbTable, FilterLimits, FilterSpec, Fingerprint,
    NetworkConfig, PipelineConfig, ReconnectPolicy, Redactor, SinkTarget, flag_names,
    parse_checkpoint_store, parse_header, parse_key_value, parse_origin, parse_sink, parse_url,
    source_url,
};
use crate::net::{ProxySettings, TlsSettings};
use crate::sink::{FileRoll, KinesisOptions, SinkSpec};

/// The validated configuration of `sse-ingest run`'s flags.
pub fn pipeline_config(args: &RunArgs) -> Result<PipelineConfig, ConfigError> {
    let mut url = parse_url(&args.url)?;
    let mut secrets = Redactor::default();
    let mut headers = args
        .headers
        .iter()
        .map(|h| parse_header(h.expose()))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(basic) = source_url::take_credentials(&mut url, &mut secrets) {
        if headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        {
            return Err(ConfigError::Url {
                url: crate::net::shown_url(&url),
                reason: "it carries a user and password, and --header gives an Authorization \
                         too: give the credentials once"
                    .to_string(),
            });
        }
        headers.insert(0, ("Authorization".to_string(), basic));
    }
    let filter_config = args
        .filter_config
        .iter()
        .map(|kv| parse_key_value(kv).ok_or_else(|| ConfigError::FilterConfig(kv.clone())))
        .collect::<Result<Vec<_>, _>>()?;
    let filter = FilterSpec::parse(&args.filter);
    if args.name.is_empty()
        || !args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ConfigError::Name(args.name.clone()));
    }
    check_ranges(args)?;
    if args.watch && !matches!(filter, FilterSpec::File(_)) {
        return Err(ConfigError::Value {
            flag: "watch",
            reason: "needs --filter FILE.wasm".into(),
        });
    }
    Ok(PipelineConfig {
        name: args.name.clone(),
        url,
        headers,
        types: args
            .types
            .iter()
            .filter(|t| !t.is_empty())
            .cloned()
            .collect(),
        format: args.format.into(),
        sink: match parse_sink(&args.sink)? {
            SinkTarget::File(dir) => SinkSpec::File(dir),
            SinkTarget::Stdout => SinkSpec::Stdout,
            SinkTarget::Discard => SinkSpec::Discard,
            SinkTarget::Kinesis(stream) => SinkSpec::Kinesis(Box::new(KinesisOptions {
                region: args.region.clone(),
                endpoint_url: args.endpoint_url.clone(),
                http: aws_http_settings(args)?,
                producer: producer_config(stream, args)?,
            })),
        },
        shutdown_timeout: Duration::from_millis(args.shutdown_timeout_ms),
        drain_stall_timeout: Duration::from_millis(args.drain_stall_timeout_ms),
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
        batch_max_bytes: args.batch_max_bytes,
        reconnect: ReconnectPolicy {
            enabled: !args.once,
            initial_delay: Duration::from_millis(args.reconnect_initial_ms),
            min_delay: Duration::from_millis(args.reconnect_min_ms),
            max_delay: Duration::from_millis(args.reconnect_max_ms),
            reset_after: Duration::from_secs(30),
            fatal_statuses: args.fatal_statuses.clone(),
            fatal_content_type: !args.retry_wrong_content_type,
        },
        dedupe_window: args.dedupe_window,
        dead_letter_dir: match &args.dead_letter {
            None => args.state_dir.join("dead-letters"),
            Some(spec) => match parse_sink(spec)? {
                SinkTarget::File(dir) => dir,
                SinkTarget::Stdout | SinkTarget::Discard | SinkTarget::Kinesis(_) => {
                    return Err(ConfigError::Value {
                        flag: "dead-letter",
                        reason: "dead letters go to files: use `file:DIR`".into(),
                    });
                }
            },
        },
        on_filter_error: args.on_filter_error.into(),
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
        secrets,
        checkpoint_interval: Duration::from_millis(args.checkpoint_interval_ms),
        checkpoint_store: checkpoint_store(args)?,
        file_roll: FileRoll {
            max_bytes: args.file_roll_bytes,
            max_age: Duration::from_millis(args.file_roll_interval_ms),
        },
        dead_letter_max_bytes: args.dead_letter_max_bytes,
        fingerprint: Fingerprint::of(args.clone()),
    })
    .and_then(PipelineConfig::validate)
}

/// `--checkpoint-store` and `--checkpoint-endpoint-url` and `--checkpoint-namespace`, which
/// only a DynamoDB store uses.
fn checkpoint_store(args: &RunArgs) -> Result<CheckpointStoreSpec, ConfigError> {
    match parse_checkpoint_store(&args.checkpoint_store)? {
        None if args.checkpoint_endpoint_url.is_some() => Err(ConfigError::Value {
            flag: "checkpoint-endpoint-url",
            reason: "needs --checkpoint-store dynamodb:TABLE".into(),
        }),
        None if args.checkpoint_namespace.is_some() => Err(ConfigError::Value {
            flag: "checkpoint-namespace",
            reason: "needs --checkpoint-store dynamodb:TABLE (a file checkpoint is in its own state directory)".into(),
        }),
        None => Ok(CheckpointStoreSpec::File),
        Some(table) => {
            if let Some(url) = &args.checkpoint_endpoint_url {
                parse_url(url).map_err(|error| match error {
                    ConfigError::Url { url, reason } => ConfigError::Value {
                        flag: "checkpoint-endpoint-url",
                        reason: format!("`{url}`: {reason}"),
                    },
                    other => other,
                })?;
            }
            Ok(CheckpointStoreSpec::DynamoDb(Box::new(DynamoDbTable {
                table,
                region: args.region.clone(),
                endpoint_url: args.checkpoint_endpoint_url.clone(),
                http: aws_http_settings(args)?,
                namespace: args
                    .checkpoint_namespace
                    .as_deref()
                    .map(parse_checkpoint_namespace)
                    .transpose()?,
                heartbeat: Duration::from_millis(args.checkpoint_heartbeat_ms),
            })))
        }
    }
}

/// `--checkpoint-namespace`: 1 to 200 letters, digits, `_`, `-` and `.`, so that
/// `NAMESPACE/NAME` is unambiguous (no `/`) and well inside DynamoDB's 2 KiB key.
fn parse_checkpoint_namespace(text: &str) -> Result<String, ConfigError> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if text.is_empty() || text.len() > 200 || !text.chars().all(allowed) {
        return Err(ConfigError::Value {
            flag: "checkpoint-namespace",
            reason: format!("`{text}`: use 1 to 200 letters, digits, `_`, `-` and `.`"),
        });
    }
    Ok(text.to_string())
}

/// The range of every number that reaches arithmetic, an allocation or a timer, so that an
/// absurd value is a usage error naming its flag and bounds rather than an overflow, a guest
/// that cannot start, or a timer that never fires; then the pairs that must agree.
fn check_ranges(args: &RunArgs) -> Result<(), ConfigError> {
    const MIB: u64 = 1024 * 1024;
    const DAY_MS: u64 = 24 * 60 * 60 * 1000;
    let ranges: [(&'static str, u64, u64, u64, &str); 19] = [
        (
            "file-roll-bytes",
            args.file_roll_bytes,
            1024,
            1024 * MIB,
            "",
        ),
        (
            "file-roll-interval-ms",
            args.file_roll_interval_ms,
            1000,
            60 * 60 * 1000,
            "",
        ),
        (
            "dead-letter-max-bytes",
            args.dead_letter_max_bytes,
            1024,
            1024 * 1024 * MIB,
            "",
        ),
        (
            "checkpoint-interval-ms",
            args.checkpoint_interval_ms,
            0,
            60 * 60 * 1000,
            "",
        ),
        (
            "checkpoint-heartbeat-ms",
            args.checkpoint_heartbeat_ms,
            100,
            60 * 60 * 1000,
            "",
        ),
        ("max-event-bytes", args.max_event_bytes, 1024, 64 * MIB, ""),
        (
            "batch-max-events",
            u64::from(args.batch_max_events),
            1,
            65_536,
            "",
        ),
        (
            "batch-max-bytes",
            args.batch_max_bytes,
            64 * 1024,
            256 * MIB,
            "",
        ),
        ("idle-timeout-ms", args.idle_timeout_ms, 1, DAY_MS, ""),
        ("connect-timeout-ms", args.connect_timeout_ms, 1, DAY_MS, ""),
        (
            "reconnect-initial-ms",
            args.reconnect_initial_ms,
            0,
            DAY_MS,
            "",
        ),
        (
            "reconnect-min-ms",
            args.reconnect_min_ms,
            10,
            DAY_MS,
            " (below 10, a server's `retry: 0` becomes a tight loop)",
        ),
        ("reconnect-max-ms", args.reconnect_max_ms, 10, DAY_MS, ""),
        ("dedupe-window", args.dedupe_window as u64, 0, 1_000_000, ""),
        (
            "filter-memory-mib",
            args.filter_memory_mib as u64,
            2,
            4096,
            "",
        ),
        (
            "filter-cpu-budget-ms",
            args.filter_cpu_budget_ms,
            1,
            10_000,
            " (a filter busy for longer is stuck: the budget bounds how long a batch waits)",
        ),
        (
            "shutdown-timeout-ms",
            args.shutdown_timeout_ms,
            0,
            DAY_MS,
            "",
        ),
        (
            "drain-stall-timeout-ms",
            args.drain_stall_timeout_ms,
            100,
            DAY_MS,
            "",
        ),
        (
            "rollback-batches",
            u64::from(args.rollback_batches),
            0,
            1_000_000,
            "",
        ),
    ];
    for (flag, value, low, high, why) in ranges {
        if !(low..=high).contains(&value) {
            return Err(ConfigError::Value {
                flag,
                reason: format!("{value} is out of range: {low} to {high}{why}"),
            });
        }
    }
    if args.reconnect_min_ms > args.reconnect_max_ms {
        return Err(ConfigError::Value {
            flag: "reconnect-min-ms",
            reason: format!(
                "{} is more than --reconnect-max-ms {}",
                args.reconnect_min_ms, args.reconnect_max_ms
            ),
        });
    }
    if args.reconnect_initial_ms > args.reconnect_max_ms {
        return Err(ConfigError::Value {
            flag: "reconnect-initial-ms",
            reason: format!(
                "{} is more than --reconnect-max-ms {}",
                args.reconnect_initial_ms, args.reconnect_max_ms
            ),
        });
    }
    Ok(())
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
        proxy: args.proxy.as_ref().map(|proxy| proxy.expose().to_string()),
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
        keep_headers_on_redirect: args.keep_headers_on_redirect,
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
        proxy: args.proxy.as_ref().map(|proxy| proxy.expose().to_string()),
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

/// The Kinesis producer's settings from the flags, checked now so that a bad value is a
/// usage error naming its flag rather than a failure after connecting.
fn producer_config(stream: String, args: &RunArgs) -> Result<ProducerConfig, ConfigError> {
    let mut config = ProducerConfig::new(stream);
    config.ordered = args.ordered;
    config.aggregate = args.aggregate;
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

#[cfg(test)]
mod tests {
    use super::*;

    use crate::cli::run_args_for_tests as run_args;

    #[test]
    fn debug_hides_secrets_while_the_fingerprint_still_tells_a_rotated_one() {
        let flags = |key: &str| {
            run_args(&[
                "--header",
                &format!("X-Api-Key: {key}"),
                "--admin-token",
                "token-for-the-admin-api",
                "--proxy",
                "http://user:proxy-password@127.0.0.1:3128",
            ])
        };
        let (first, rotated) = (flags("first-key-value"), flags("second-key-value"));
        let shown = format!("{first:?}");
        for secret in [
            "first-key-value",
            "token-for-the-admin-api",
            "proxy-password",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert_eq!(
            shown,
            format!("{rotated:?}"),
            "Debug alone cannot tell them apart"
        );
        let fingerprint = |args| pipeline_config(&args).map(|config| config.fingerprint);
        let (a, b) = (fingerprint(first.clone()), fingerprint(rotated));
        let (a, b) = (a.expect("valid flags"), b.expect("valid flags"));
        assert!(a != b, "a rotated header value restarts the pipeline");
        assert!(a == fingerprint(first).expect("valid flags"));
    }

    #[test]
    fn a_checkpoint_namespace_keys_dynamodb_items_and_needs_a_dynamodb_store() {
        let dynamodb = |extra: &[&str]| {
            let mut flags = vec!["--checkpoint-store", "dynamodb:checkpoints"];
            flags.extend_from_slice(extra);
            pipeline_config(&run_args(&flags)).map(|config| config.checkpoint_store)
        };
        let Ok(CheckpointStoreSpec::DynamoDb(table)) = dynamodb(&[
            "--checkpoint-namespace",
            "blue-prod",
            "--checkpoint-heartbeat-ms",
            "2500",
        ]) else {
            panic!("a valid DynamoDB store");
        };
        assert_eq!(table.namespace.as_deref(), Some("blue-prod"));
        assert_eq!(table.heartbeat, Duration::from_millis(2500));
        for bad in ["", "a/b", "two words"] {
            let error = dynamodb(&["--checkpoint-namespace", bad]).unwrap_err();
            assert!(
                error.to_string().contains("--checkpoint-namespace"),
                "{bad}: {error}"
            );
        }
        let error = pipeline_config(&run_args(&["--checkpoint-namespace", "blue"])).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("needs --checkpoint-store dynamodb:TABLE"),
            "{error}"
        );
        let error = dynamodb(&["--checkpoint-heartbeat-ms", "10"]).unwrap_err();
        assert!(
            error.to_string().contains("--checkpoint-heartbeat-ms"),
            "{error}"
        );
    }

    #[test]
    fn numbers_out_of_range_are_refused_naming_the_flag_and_the_bounds() {
        for (flags, expected) in [
            (
                &["--max-event-bytes", "100000000000"][..],
                "invalid --max-event-bytes: 100000000000 is out of range: 1024 to 67108864",
            ),
            (
                &["--batch-max-events", "0"][..],
                "invalid --batch-max-events: 0 is out of range",
            ),
            (
                &["--filter-memory-mib", "9999999"][..],
                "invalid --filter-memory-mib",
            ),
            (
                &["--file-roll-bytes", "1000"][..],
                "invalid --file-roll-bytes: 1000 is out of range: 1024 to 1073741824",
            ),
            (
                &["--file-roll-interval-ms", "999"][..],
                "invalid --file-roll-interval-ms: 999 is out of range: 1000 to 3600000",
            ),
            (
                &["--file-roll-interval-ms", "3600001"][..],
                "invalid --file-roll-interval-ms: 3600001 is out of range",
            ),
            (
                &["--dead-letter-max-bytes", "100"][..],
                "invalid --dead-letter-max-bytes: 100 is out of range: 1024 to 1099511627776",
            ),
            (
                &["--reconnect-min-ms", "5000", "--reconnect-max-ms", "1000"][..],
                "invalid --reconnect-min-ms: 5000 is more than --reconnect-max-ms 1000",
            ),
            (
                &["--reconnect-initial-ms", "60000"][..],
                "invalid --reconnect-initial-ms: 60000 is more than --reconnect-max-ms 30000",
            ),
            (
                &["--drain-stall-timeout-ms", "99"][..],
                "invalid --drain-stall-timeout-ms: 99 is out of range: 100 to 86400000",
            ),
        ] {
            let error = pipeline_config(&run_args(flags)).expect_err("refused");
            assert!(
                error.to_string().starts_with(expected),
                "{flags:?}: {error}"
            );
        }
        assert!(
            pipeline_config(&run_args(&[])).is_ok(),
            "the defaults are in range"
        );
    }

    #[test]
    fn the_drain_stall_timeout_is_its_own_setting_beside_the_shutdown_timeout() {
        let defaults = pipeline_config(&run_args(&[])).unwrap();
        assert_eq!(defaults.drain_stall_timeout, Duration::from_secs(60));
        assert_eq!(defaults.shutdown_timeout, Duration::from_secs(30));
        let set = pipeline_config(&run_args(&["--drain-stall-timeout-ms", "3000"])).unwrap();
        assert_eq!(set.drain_stall_timeout, Duration::from_secs(3));
        assert_eq!(set.shutdown_timeout, Duration::from_secs(30));
    }

    #[test]
    fn dead_letters_inside_the_sink_directory_are_refused_naming_both() {
        for (sink, dead) in [
            ("file:out", "file:out"),
            ("file:out", "file:./out/dead"),
            ("file:out/data", "file:out"),
        ] {
            let args = run_args(&["--sink", sink, "--dead-letter", dead]);
            let error = pipeline_config(&args).expect_err("overlap refused");
            let text = error.to_string();
            assert!(text.starts_with("invalid --dead-letter:"), "{text}");
            assert!(text.contains("overlap"), "{text}");
        }
        let args = run_args(&["--sink", "file:out", "--dead-letter", "file:out-dead"]);
        assert!(pipeline_config(&args).is_ok());
    }
}
