//! Keeps human edits to a chosen list of wikis: an sse-ingest filter in Rust.
//!
//! Configuration (`--filter-config KEY=VALUE`):
//!
//! | key | meaning |
//! |---|---|
//! | `wikis=enwiki,dewiki` | the wikis whose edits to keep (required; comma-separated) |
//! | `bots=true\|false` | keep bot edits as well (default: false) |
//!
//! Events whose data is not a JSON object are dropped and counted in a warning per batch.
//! The host writes each kept event in the pipeline's `--format` and keys it by
//! `--partition-key`: this filter only says which events to keep. The Python
//! (`examples/filters/python`) and JavaScript (`examples/filters/js`) examples are the same
//! filter, line for line, and pass the same expectations.

use std::collections::BTreeSet;

use filter_sdk::{
    Config, ConfigError, DropCounter, Event, Filter, FilterError, Level, Output, Pipeline, invalid,
    log,
};
use serde_json::Value;

/// Keeps edits to `wikis`, and bot edits only when `keep_bots`.
struct WikiEdits {
    wikis: BTreeSet<String>,
    keep_bots: bool,
    not_json: DropCounter,
}

impl Filter for WikiEdits {
    fn new(pipeline: &Pipeline, config: &Config) -> Result<Self, ConfigError> {
        config.reject_unknown(&["wikis", "bots"])?;
        let wikis: BTreeSet<String> = config
            .get("wikis")
            .ok_or_else(|| ConfigError::MissingKey("wikis".to_string()))?
            .split(',')
            .map(str::trim)
            .filter(|wiki| !wiki.is_empty())
            .map(str::to_string)
            .collect();
        if wikis.is_empty() {
            return Err(invalid(
                "wikis",
                "give a comma-separated list of wiki names",
            ));
        }
        let keep_bots = config.flag("bots")?.unwrap_or(false);
        let names: Vec<&str> = wikis.iter().map(String::as_str).collect();
        log(
            Level::Info,
            &format!(
                "keeping edits to {} on {}",
                names.join(", "),
                pipeline.source_url
            ),
        );
        Ok(Self {
            wikis,
            keep_bots,
            not_json: DropCounter::new("wiki-edits", "whose data is not JSON"),
        })
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), FilterError> {
        let mut not_json = 0;
        for (index, event) in events.iter().enumerate() {
            let Ok(Value::Object(change)) = serde_json::from_str::<Value>(&event.data) else {
                not_json += 1;
                continue;
            };
            // Decide here what to keep: this filter keeps edits to the chosen wikis.
            let is_edit = change.get("type").and_then(Value::as_str) == Some("edit");
            let wiki = change
                .get("wiki")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !is_edit || !self.wikis.contains(wiki) {
                continue;
            }
            if change.get("bot") == Some(&Value::Bool(true)) && !self.keep_bots {
                continue;
            }
            out.keep(index);
        }
        self.not_json.batch_done(not_json);
        Ok(())
    }
}

filter_sdk::export_filter!(WikiEdits);
