//! Projects Wikimedia `recentchange` events
//! (<https://stream.wikimedia.org/v2/stream/recentchange>) to compact JSON
//! records, keyed by wiki:
//!
//! ```text
//! {"id":1659529639,"wiki":"enwiki","type":"edit","title":"EFL Championship",
//!  "user":"87.12.215.232","bot":false,"timestamp":1690617099,"delta":58}
//! ```
//!
//! (one line per record). `id`, `wiki`, `type`, `title`, `user`, `bot` and
//! `timestamp` are copied from the event as they are, `null` when the event
//! lacks them; `delta` is `length.new - length.old`, `null` when either is
//! missing (log events have no `length`, page creations no `length.old`).
//!
//! The record is always this JSON object, whatever the pipeline's `--format`:
//! the filter replaces the envelope rather than wrapping it. Its partition key
//! is the event's `wiki`; an event without a (non-empty string) `wiki` gets the
//! pipeline's key. An event whose data is not a JSON object is dropped and
//! counted; the filter logs one warning per batch that had any.
//!
//! The filter takes no configuration; any key is an error.

use filter_sdk::{Config, ConfigError, DropCounter, Event, Filter, FilterError, Output, Pipeline};
use serde_json::{Map, Value};

/// The fields copied from the event, in output order (`delta` follows).
const COPIED: [&str; 7] = ["id", "wiki", "type", "title", "user", "bot", "timestamp"];

/// One compact record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Projection {
    /// The record's bytes: one JSON object, no newline.
    pub data: Vec<u8>,
    /// The event's `wiki`; `None` leaves the pipeline's partition key.
    pub partition_key: Option<String>,
}

/// Projects the data of a recentchange event; `None` when it is not a JSON object.
pub fn project(data: &str) -> Option<Projection> {
    let Ok(Value::Object(event)) = serde_json::from_str::<Value>(data) else {
        return None;
    };
    // Written by hand so the fields keep their documented order.
    let mut record = String::with_capacity(256);
    record.push('{');
    for (i, name) in COPIED.iter().enumerate() {
        if i > 0 {
            record.push(',');
        }
        record.push('"');
        record.push_str(name);
        record.push_str("\":");
        record.push_str(&event.get(*name).unwrap_or(&Value::Null).to_string());
    }
    record.push_str(",\"delta\":");
    match delta(&event) {
        Some(delta) => record.push_str(&delta.to_string()),
        None => record.push_str("null"),
    }
    record.push('}');
    let partition_key = match event.get("wiki") {
        Some(Value::String(wiki)) if !wiki.is_empty() => Some(wiki.clone()),
        _ => None,
    };
    Some(Projection {
        data: record.into_bytes(),
        partition_key,
    })
}

/// `length.new - length.old`, when both are integers.
fn delta(event: &Map<String, Value>) -> Option<i64> {
    let length = event.get("length")?;
    let new = length.get("new")?.as_i64()?;
    let old = length.get("old")?.as_i64()?;
    new.checked_sub(old)
}

/// The recentchange projection.
#[derive(Debug)]
pub struct Wikimedia {
    not_json: DropCounter,
}

impl Default for Wikimedia {
    fn default() -> Self {
        Self {
            not_json: DropCounter::new("wikimedia", "whose data is not a JSON object"),
        }
    }
}

impl Filter for Wikimedia {
    fn new(_pipeline: &Pipeline, config: &Config) -> Result<Self, ConfigError> {
        config.reject_unknown(&[])?;
        Ok(Self::default())
    }

    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), FilterError> {
        let mut not_json = 0u64;
        for (index, event) in events.iter().enumerate() {
            match project(&event.data) {
                Some(Projection {
                    data,
                    partition_key: Some(key),
                }) => out.record_keyed(index, data, key),
                Some(Projection {
                    data,
                    partition_key: None,
                }) => out.record(index, data),
                None => not_json += 1,
            }
        }
        self.not_json.batch_done(not_json);
        Ok(())
    }
}

filter_sdk::export_filter!(Wikimedia);

#[cfg(test)]
mod tests {
    use super::*;

    /// The data of the fixture's 100 recentchange events (all enwiki edits).
    fn fixture() -> Vec<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../tests/fixtures/wikimedia-recentchange-sample.ndjson"
        );
        let text = std::fs::read_to_string(path).expect("the fixture is readable");
        text.lines().map(str::to_string).collect()
    }

    /// The fixture event at `index`, changed by `edit`.
    fn edited(index: usize, edit: impl FnOnce(&mut Map<String, Value>)) -> String {
        let mut value: Value = serde_json::from_str(&fixture()[index]).expect("JSON");
        edit(value.as_object_mut().expect("an object"));
        value.to_string()
    }

    fn record(data: &str) -> Value {
        let projection = project(data).expect("projected");
        serde_json::from_slice(&projection.data).expect("the record is JSON")
    }

    #[test]
    fn an_edit_becomes_the_compact_record_with_fields_in_order() {
        let projection = project(&fixture()[0]).expect("projected");
        assert_eq!(
            String::from_utf8(projection.data).expect("UTF-8"),
            r#"{"id":1659529639,"wiki":"enwiki","type":"edit","title":"EFL Championship","user":"87.12.215.232","bot":false,"timestamp":1690617099,"delta":58}"#
        );
        assert_eq!(projection.partition_key.as_deref(), Some("enwiki"));
    }

    #[test]
    fn every_fixture_event_is_projected_and_keyed_by_its_wiki() {
        for data in fixture() {
            let projection = project(&data).expect("projected");
            assert_eq!(projection.partition_key.as_deref(), Some("enwiki"));
            let record: Value = serde_json::from_slice(&projection.data).expect("JSON");
            let object = record.as_object().expect("an object");
            assert_eq!(object.len(), 8);
            assert!(object["delta"].is_i64());
        }
    }

    #[test]
    fn a_bot_edit_keeps_its_bot_flag() {
        let record = record(&fixture()[4]);
        assert_eq!(record["user"], "InternetArchiveBot");
        assert_eq!(record["bot"], true);
        assert_eq!(record["delta"], 184);
    }

    #[test]
    fn delta_is_negative_when_the_page_shrank() {
        assert_eq!(record(&fixture()[18])["delta"], -1374);
        assert_eq!(record(&fixture()[88])["delta"], -7106);
    }

    #[test]
    fn delta_is_null_for_a_log_event_without_lengths() {
        let log_event = edited(0, |event| {
            event.remove("length");
            event.remove("revision");
            event.insert("type".into(), "log".into());
            event.insert("log_type".into(), "patrol".into());
        });
        let record = record(&log_event);
        assert_eq!(record["type"], "log");
        assert_eq!(record["delta"], Value::Null);
    }

    #[test]
    fn delta_is_null_for_a_page_creation_without_an_old_length() {
        let creation = edited(0, |event| {
            event.insert("type".into(), "new".into());
            event.insert("length".into(), serde_json::json!({"new": 91166}));
        });
        assert_eq!(record(&creation)["delta"], Value::Null);
    }

    #[test]
    fn missing_fields_become_null() {
        let sparse = edited(0, |event| {
            event.remove("user");
            event.remove("id");
        });
        let record = record(&sparse);
        assert_eq!(record["user"], Value::Null);
        assert_eq!(record["id"], Value::Null);
        assert_eq!(record["title"], "EFL Championship");
    }

    #[test]
    fn an_event_without_a_wiki_gets_the_pipeline_key() {
        let no_wiki = edited(0, |event| {
            event.remove("wiki");
        });
        assert_eq!(project(&no_wiki).expect("projected").partition_key, None);
        let empty_wiki = edited(0, |event| {
            event.insert("wiki".into(), "".into());
        });
        assert_eq!(project(&empty_wiki).expect("projected").partition_key, None);
    }

    #[test]
    fn data_that_is_not_a_json_object_is_dropped() {
        for data in [
            "trap",
            "",
            "[1,2]",
            "42",
            "\"enwiki\"",
            "null",
            &fixture()[0][..40],
        ] {
            assert_eq!(project(data), None, "{data}");
        }
    }

    #[test]
    fn the_not_json_warning_gives_the_batch_count_and_the_total() {
        assert_eq!(
            Wikimedia::default().not_json.count(1).as_deref(),
            Some(
                "wikimedia: dropped 1 event(s) of this batch whose data is not a JSON object \
                 (1 since start)"
            )
        );
    }

    #[test]
    fn any_configuration_key_is_refused() {
        let pipeline = Pipeline {
            name: "test".to_string(),
            source_url: "http://127.0.0.1/".to_string(),
        };
        let config = Config::from_text(&[("wiki", "enwiki")]);
        let err = Wikimedia::new(&pipeline, &config).expect_err("refused");
        assert!(
            matches!(&err, ConfigError::UnknownKey(key) if key == "wiki"),
            "{err}"
        );
    }
}
