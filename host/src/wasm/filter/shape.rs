//! The record a kept event becomes: the pipeline's `--format` and `--partition-key`,
//! applied by the host once, the same way for a filter in any language.
//!
//! (Filters of the 0.1 contract built records themselves, with the Rust SDK's copy of
//! this code; their output is written as they made it.)

use std::sync::Arc;

use bytes::Bytes;
use serde::Serialize;

use crate::core::format::Format;
use crate::core::partition::KeyStrategy;
use crate::core::record::Record;
use crate::wasm::filter::FilterContext;
use crate::wasm::source::Event;

/// Shapes events into records for one pipeline.
#[derive(Debug, Clone)]
pub struct Shaper {
    format: Format,
    keys: KeyStrategy,
    /// The shown source URL, an envelope's `source`.
    source: Arc<str>,
}

/// The `envelope` format: one JSON object. Its fields are declared in the order the
/// records have always had (alphabetical), so the bytes do not change.
#[derive(Serialize)]
struct Envelope<'a> {
    data: &'a str,
    event: &'a str,
    id: &'a str,
    received_at: String,
    source: &'a str,
}

impl Shaper {
    /// The shaper of the pipeline `context` describes.
    pub fn new(context: &FilterContext) -> Self {
        Self {
            format: context.format,
            keys: context.partition_key.clone(),
            source: Arc::from(context.source_url.as_str()),
        }
    }

    /// The record of an event kept as it is.
    pub fn event_record(&self, event: &Event) -> Record {
        Record {
            data: self.bytes(event),
            partition_key: self.key_for(event),
            stream: None,
        }
    }

    /// A record of a filter's own bytes, made from `event`: keyed by its own key, else by
    /// the pipeline's strategy applied to `event`.
    pub fn own_record(&self, event: &Event, data: Vec<u8>, key: Option<String>) -> Record {
        Record {
            data: Bytes::from(data),
            partition_key: key
                .filter(|k| !k.is_empty())
                .or_else(|| self.key_for(event)),
            stream: None,
        }
    }

    /// The event in the pipeline's format.
    pub fn bytes(&self, event: &Event) -> Bytes {
        match self.format {
            Format::Raw => Bytes::copy_from_slice(event.data.as_bytes()),
            Format::Envelope => {
                let envelope = Envelope {
                    data: &event.data,
                    event: &event.event_type,
                    id: &event.id,
                    received_at: rfc3339_millis(event.received_at_ms),
                    source: &self.source,
                };
                // Serialising strings cannot fail.
                Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
            }
        }
    }

    /// The pipeline's partition key for `event`; `None` leaves it to the sink (a random key,
    /// or the constant): the strategy is `random`, or the event has no such value.
    pub fn key_for(&self, event: &Event) -> Option<String> {
        let key = match &self.keys {
            KeyStrategy::Constant(key) => key.clone(),
            KeyStrategy::EventType => event.event_type.clone(),
            KeyStrategy::EventId => event.id.clone(),
            KeyStrategy::JsonPointer(pointer) => {
                let data: serde_json::Value = serde_json::from_str(&event.data).ok()?;
                match data.pointer(pointer)? {
                    serde_json::Value::String(text) => text.clone(),
                    serde_json::Value::Null
                    | serde_json::Value::Array(_)
                    | serde_json::Value::Object(_) => return None,
                    other => other.to_string(),
                }
            }
            KeyStrategy::Random => return None,
        };
        (!key.is_empty()).then_some(key)
    }
}

/// Milliseconds since the Unix epoch as RFC 3339 UTC with millisecond precision; a
/// value past the year 9999 is written as its number of milliseconds.
pub fn rfc3339_millis(ms: u64) -> String {
    const FORMAT: &[time::format_description::FormatItem<'_>] = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(FORMAT).ok())
        .unwrap_or_else(|| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaper(format: Format, keys: &str) -> Shaper {
        Shaper {
            format,
            keys: keys.parse().expect("a strategy"),
            source: Arc::from("https://example.org/stream"),
        }
    }

    fn event(data: &str) -> Event {
        Event {
            event_type: "edit".into(),
            data: data.into(),
            id: "7".into(),
            received_at_ms: 1_709_210_096_789,
        }
    }

    #[test]
    fn dates_are_rfc3339_with_milliseconds() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339_millis(1_709_210_096_789),
            "2024-02-29T12:34:56.789Z"
        );
        assert_eq!(
            rfc3339_millis(1_704_067_199_999),
            "2023-12-31T23:59:59.999Z"
        );
        assert_eq!(rfc3339_millis(u64::MAX), u64::MAX.to_string());
    }

    #[test]
    fn an_envelope_has_the_bytes_the_rust_sdk_always_wrote() {
        let record = shaper(Format::Envelope, "id").event_record(&event("{\"a\":1}"));
        assert_eq!(
            std::str::from_utf8(&record.data).unwrap(),
            r#"{"data":"{\"a\":1}","event":"edit","id":"7","received_at":"2024-02-29T12:34:56.789Z","source":"https://example.org/stream"}"#
        );
        assert_eq!(record.partition_key.as_deref(), Some("7"));
    }

    #[test]
    fn raw_records_are_the_data_keyed_by_the_strategy() {
        let e = event(r#"{"meta":{"domain":"en.wikipedia.org"},"n":3}"#);
        let raw = shaper(Format::Raw, "json:/meta/domain").event_record(&e);
        assert_eq!(&raw.data[..], e.data.as_bytes());
        assert_eq!(raw.partition_key.as_deref(), Some("en.wikipedia.org"));
        let by_number = shaper(Format::Raw, "json:/n").key_for(&e);
        assert_eq!(by_number.as_deref(), Some("3"));
        assert_eq!(shaper(Format::Raw, "json:/meta").key_for(&e), None);
        assert_eq!(shaper(Format::Raw, "random").key_for(&e), None);
        assert_eq!(
            shaper(Format::Raw, "type").key_for(&e).as_deref(),
            Some("edit")
        );
        assert_eq!(
            shaper(Format::Raw, "const:0").key_for(&e).as_deref(),
            Some("0")
        );
    }

    #[test]
    fn own_records_keep_their_key_or_take_their_events() {
        let s = shaper(Format::Raw, "id");
        let e = event("x");
        let keyed = s.own_record(&e, b"mine".to_vec(), Some("k".into()));
        assert_eq!(keyed.partition_key.as_deref(), Some("k"));
        let unkeyed = s.own_record(&e, b"mine".to_vec(), None);
        assert_eq!(unkeyed.partition_key.as_deref(), Some("7"));
        assert_eq!(&unkeyed.data[..], b"mine");
    }
}
