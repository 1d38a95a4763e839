//! The seed's configuration: the runtime-properties JSON it was given on
//! Kinesis Data Analytics, `[{"PropertyGroupId": "...", "PropertyMap": {...}}]`,
//! read by `run --properties FILE` so that an existing deployment moves over
//! unchanged.
//!
//! | group | key | becomes |
//! |---|---|---|
//! | `SSESourceProperties` | `url` | `--url` |
//! | | `headers` (`Name\|value\|Name\|value`) | `--header` (added) |
//! | | `types` (`a\|b`) | `--types` |
//! | | `readTimeoutMS` | `--idle-timeout-ms` (an idle timeout that reconnects, not a stall; `0`, the seed's "none", keeps the default) |
//! | | `reportMessagesReceivedMS` | `report_interval_ms` of a config file (`sse-ingest import`); ignored by `run --properties` |
//! | `OutputStreamProperties` | `DefaultStream` | `--sink kinesis:STREAM` |
//! | `ProducerConfigProperties` | `aws.region` | `--region` |
//! | | `AggregationEnabled` | `--aggregate` when `true` (KPL-format aggregated records, for consumers that de-aggregate); else one Kinesis record per output record |
//!
//! A flag given with a value other than its default wins over the file.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::cli::RunArgs;
use crate::config::{ConfigError, Secret};

const DEFAULT_URL: &str = "https://stream.wikimedia.org/v2/stream/recentchange";
const DEFAULT_SINK: &str = "file:./sse-ingest-out";
const DEFAULT_IDLE_TIMEOUT_MS: u64 = 60_000;

#[derive(Debug, Deserialize)]
struct PropertyGroup {
    #[serde(rename = "PropertyGroupId")]
    id: String,
    #[serde(rename = "PropertyMap", default)]
    map: BTreeMap<String, serde_json::Value>,
}

/// The settings read from a seed properties file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SeedProperties {
    /// `SSESourceProperties.url`.
    pub url: Option<String>,
    /// `SSESourceProperties.headers`, as name and value pairs.
    pub headers: Vec<(String, String)>,
    /// `SSESourceProperties.types`.
    pub types: Vec<String>,
    /// `SSESourceProperties.readTimeoutMS`.
    pub read_timeout_ms: Option<u64>,
    /// `reportMessagesReceivedMS`: how often the rate line is logged.
    pub report_interval_ms: Option<u64>,
    /// `OutputStreamProperties.DefaultStream`.
    pub default_stream: Option<String>,
    /// `ProducerConfigProperties.aws.region`.
    pub region: Option<String>,
    /// `ProducerConfigProperties.AggregationEnabled`: the seed's consumers de-aggregate.
    pub aggregation: bool,
}

impl SeedProperties {
    /// Reads and checks the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Value {
            flag: "properties",
            reason: format!("{}: {reason}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        Self::parse(&text).map_err(invalid)
    }

    /// Parses the JSON text of a properties file.
    pub fn parse(text: &str) -> Result<Self, String> {
        let groups: Vec<PropertyGroup> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        let mut seed = Self::default();
        for group in &groups {
            let get = |key: &str| -> Option<String> {
                group.map.get(key).map(|value| match value {
                    serde_json::Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
            };
            match group.id.as_str() {
                "SSESourceProperties" => {
                    seed.url = get("url");
                    if let Some(headers) = get("headers").filter(|h| !h.is_empty()) {
                        let parts: Vec<&str> = headers.split('|').collect();
                        if !parts.len().is_multiple_of(2) {
                            return Err(format!(
                                "SSESourceProperties.headers must be name|value pairs, got `{headers}`"
                            ));
                        }
                        seed.headers = parts
                            .chunks(2)
                            .map(|pair| (pair[0].trim().to_string(), pair[1].trim().to_string()))
                            .collect();
                    }
                    if let Some(types) = get("types") {
                        seed.types = types
                            .split('|')
                            .map(str::trim)
                            .filter(|t| !t.is_empty())
                            .map(str::to_string)
                            .collect();
                    }
                    if let Some(timeout) = get("readTimeoutMS") {
                        let ms = timeout.trim().parse().map_err(|_| {
                            format!("readTimeoutMS `{timeout}` is not a number of milliseconds")
                        })?;
                        seed.read_timeout_ms = Some(ms);
                    }
                    if let Some(interval) = get("reportMessagesReceivedMS") {
                        let ms = interval.trim().parse().map_err(|_| {
                            format!(
                                "reportMessagesReceivedMS `{interval}` is not a number of milliseconds"
                            )
                        })?;
                        seed.report_interval_ms = Some(ms);
                    }
                }
                "OutputStreamProperties" => seed.default_stream = get("DefaultStream"),
                "ProducerConfigProperties" => {
                    seed.region = get("aws.region");
                    if let Some(enabled) = get("AggregationEnabled") {
                        seed.aggregation = match enabled.trim().to_ascii_lowercase().as_str() {
                            "true" => true,
                            "false" => false,
                            _ => {
                                return Err(format!(
                                    "AggregationEnabled `{enabled}` is neither true nor false"
                                ));
                            }
                        };
                    }
                }
                other => tracing::warn!(group = other, "unknown property group ignored"),
            }
        }
        Ok(seed)
    }

    /// Fills in what the command line left at its default.
    pub fn apply(self, args: &mut RunArgs) {
        if let Some(url) = self.url.filter(|_| args.url == DEFAULT_URL) {
            args.url = url;
        }
        let mut headers: Vec<Secret> = self
            .headers
            .into_iter()
            .map(|(name, value)| Secret::from(format!("{name}: {value}")))
            .collect();
        headers.append(&mut args.headers);
        args.headers = headers;
        if args.types.is_empty() {
            args.types = self.types;
        }
        match self.read_timeout_ms {
            // The seed's 0 meant "no read timeout": a stall would never be noticed. Keep our
            // idle timeout instead, and say so once.
            Some(0) => tracing::info!(
                idle_timeout_ms = args.idle_timeout_ms,
                "readTimeoutMS 0 (no timeout in the old application) uses sse-ingest's idle \
                 timeout instead, so that a stalled connection is still noticed"
            ),
            Some(ms) if args.idle_timeout_ms == DEFAULT_IDLE_TIMEOUT_MS => {
                args.idle_timeout_ms = ms;
            }
            _ => {}
        }
        if let Some(stream) = self.default_stream.filter(|_| args.sink == DEFAULT_SINK) {
            args.sink = format!("kinesis:{stream}");
        }
        if args.region.is_none() {
            args.region = self.region;
        }
        // A switch: on when either the flag or the file turns it on.
        args.aggregate |= self.aggregation;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The seed's runtime properties as its own tests had them (also `import`'s fixture).
    pub(crate) const SEED: &str = r#"[
      {"PropertyGroupId": "SSESourceProperties", "PropertyMap": {
        "url": "https://stream.wikimedia.org/v2/stream/recentchange",
        "headers": "User-Agent|sse-ingest|Accept-Language|en",
        "types": "message|edit", "readTimeoutMS": "30000", "reportMessagesReceivedMS": "10000"}},
      {"PropertyGroupId": "OutputStreamProperties", "PropertyMap": {"DefaultStream": "wiki-edits"}},
      {"PropertyGroupId": "ProducerConfigProperties", "PropertyMap": {"AggregationEnabled": "false", "aws.region": "eu-west-1"}}
    ]"#;

    use crate::cli::run_args_for_tests as run_args;

    #[test]
    fn the_seed_properties_become_a_kinesis_pipeline() {
        let mut args = run_args(&[]);
        SeedProperties::parse(SEED)
            .expect("parses")
            .apply(&mut args);
        assert_eq!(args.sink, "kinesis:wiki-edits");
        assert_eq!(args.region.as_deref(), Some("eu-west-1"));
        assert_eq!(args.types, vec!["message", "edit"]);
        assert_eq!(args.idle_timeout_ms, 30_000);
        assert_eq!(
            args.headers,
            vec!["User-Agent: sse-ingest", "Accept-Language: en"]
        );
        assert!(!args.aggregate, "AggregationEnabled is false in the seed");
    }

    #[test]
    fn aggregation_enabled_in_the_seed_turns_aggregate_on() {
        let mut args = run_args(&[]);
        SeedProperties::parse(&SEED.replace(
            r#""AggregationEnabled": "false""#,
            r#""AggregationEnabled": "true""#,
        ))
        .expect("parses")
        .apply(&mut args);
        assert!(args.aggregate);
        let wrong = SeedProperties::parse(&SEED.replace(
            r#""AggregationEnabled": "false""#,
            r#""AggregationEnabled": "yes""#,
        ));
        assert!(wrong.unwrap_err().contains("AggregationEnabled `yes`"));
    }

    #[test]
    fn a_read_timeout_of_zero_keeps_the_idle_timeout() {
        let seed = SeedProperties::parse(
            r#"[{"PropertyGroupId": "SSESourceProperties", "PropertyMap": {"url": "https://example.org/s", "readTimeoutMS": "0"}}]"#,
        )
        .expect("valid properties");
        let mut args = run_args(&[]);
        seed.apply(&mut args);
        assert_eq!(args.idle_timeout_ms, DEFAULT_IDLE_TIMEOUT_MS);
        assert!(crate::cli::run_config::pipeline_config(&args).is_ok());
    }

    #[test]
    fn flags_win_over_the_properties_file() {
        let mut args = run_args(&[
            "--sink",
            "stdout",
            "--region",
            "us-east-1",
            "--types",
            "log",
        ]);
        SeedProperties::parse(SEED)
            .expect("parses")
            .apply(&mut args);
        assert_eq!(args.sink, "stdout");
        assert_eq!(args.region.as_deref(), Some("us-east-1"));
        assert_eq!(args.types, vec!["log"]);
    }

    #[test]
    fn odd_header_lists_and_bad_timeouts_are_refused() {
        let odd =
            r#"[{"PropertyGroupId": "SSESourceProperties", "PropertyMap": {"headers": "A|b|C"}}]"#;
        assert!(SeedProperties::parse(odd).is_err());
        let bad = r#"[{"PropertyGroupId": "SSESourceProperties", "PropertyMap": {"readTimeoutMS": "soon"}}]"#;
        assert!(SeedProperties::parse(bad).is_err());
        assert!(SeedProperties::parse("{}").is_err());
    }
}
