//! `sse-ingest test-filter`: runs a filter on recorded events and prints or
//! checks the records it emits — unit tests for filter components, in CI.

use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::cli::TestFilterArgs;
use crate::cli::exit::{self, Failure};
use crate::config::{FilterSpec, parse_key_value};
use crate::core::record::Record;
use crate::wasm::components;
use crate::wasm::filter_harness::FilterHarness;
use crate::wasm::source::Event;

/// Runs the filter; prints records as JSON lines, or compares them with `--expect`.
pub fn execute(args: TestFilterArgs) -> Result<u8, Failure> {
    let wasm = components::load_filter(&FilterSpec::parse(&args.filter)).map_err(Failure::usage)?;
    let pairs: Vec<(String, String)> = args
        .filter_config
        .iter()
        .map(|pair| {
            parse_key_value(pair).ok_or_else(|| {
                Failure::usage(format!(
                    "invalid --filter-config `{pair}`: expected `key=value`"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    let config: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let events = read_events(&args.input)?;
    let harness =
        FilterHarness::with_format(&wasm, &config, args.format.into()).map_err(Failure::usage)?;
    let output = harness.run(events).map_err(Failure::failed)?;
    // Records in order, then the events the filter failed one by one (0.2 `event` errors),
    // which a pipeline would dead-letter: an expectation can name both.
    let produced: Vec<Value> = output
        .records
        .iter()
        .map(record_json)
        .chain(
            output
                .failed
                .iter()
                .map(|(event, reason)| json!({ "failed_event": event, "reason": reason })),
        )
        .collect();
    let Some(expect) = &args.expect else {
        for record in &produced {
            println!("{record}");
        }
        return Ok(exit::OK);
    };
    let text = std::fs::read_to_string(expect)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", expect.display())))?;
    let expected: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .map_err(|e| Failure::usage(format!("{} line {}: {e}", expect.display(), n + 1)))
        })
        .collect::<Result<_, _>>()?;
    for (n, (got, want)) in produced.iter().zip(&expected).enumerate() {
        if got != want {
            return Err(Failure::failed(format!(
                "record {}: expected {want}, got {got}",
                n + 1
            )));
        }
    }
    if produced.len() != expected.len() {
        return Err(Failure::failed(format!(
            "expected {} records, the filter emitted {}",
            expected.len(),
            produced.len()
        )));
    }
    println!("ok: {} records as expected", produced.len());
    Ok(exit::OK)
}

/// A record as JSON: `data` as text when it is UTF-8, else `data_base64`.
fn record_json(record: &Record) -> Value {
    let mut value = match std::str::from_utf8(&record.data) {
        Ok(text) => json!({ "data": text }),
        Err(_) => {
            json!({ "data_base64": base64::engine::general_purpose::STANDARD.encode(&record.data) })
        }
    };
    if let Some(key) = &record.partition_key {
        value["partition_key"] = json!(key);
    }
    if let Some(stream) = &record.stream {
        value["stream"] = json!(stream);
    }
    value
}

/// What `--input` may hold, for error messages.
const INPUT_FORMS: &str = "an `.sse` capture, or lines as `run --sink file:DIR` writes them \
     (envelope objects with `event` and `data`, or any line as the data of a `message` event)";

/// Events from an `.sse` capture (parsed like the source does), or lines as the file sink
/// writes them: an envelope line (a JSON object with a string `data` and an `event`) is that
/// event; any other line is the data of a `message` event, as the raw format wrote it.
fn read_events(path: &Path) -> Result<Vec<Event>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    let events = if path.extension().is_some_and(|e| e == "sse") {
        sse_events(&bytes)
    } else {
        String::from_utf8_lossy(&bytes)
            .lines()
            .filter(|line| !line.is_empty())
            .map(line_event)
            .collect()
    };
    if events.is_empty() {
        return Err(Failure::usage(format!(
            "{} holds no events; --input takes {INPUT_FORMS}",
            path.display()
        )));
    }
    Ok(events)
}

fn sse_events(bytes: &[u8]) -> Vec<Event> {
    let mut parser = sse_parser::Parser::new(sse_parser::ParserConfig::default());
    let mut events = Vec::new();
    let mut collect = |item| {
        if let sse_parser::Item::Event(e) = item {
            events.push(Event {
                event_type: e.event_type,
                data: e.data,
                id: e.id,
                received_at_ms: 0,
            });
        }
    };
    parser.feed(bytes, &mut collect);
    parser.finish(&mut collect);
    events
}

fn line_event(line: &str) -> Event {
    if let Ok(Value::Object(envelope)) = serde_json::from_str::<Value>(line)
        && let (Some(Value::String(data)), Some(Value::String(event_type))) =
            (envelope.get("data"), envelope.get("event"))
    {
        let text = |name: &str| {
            envelope
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        return Event {
            event_type: event_type.clone(),
            data: data.clone(),
            id: text("id").to_string(),
            received_at_ms: 0,
        };
    }
    Event {
        event_type: "message".to_string(),
        data: line.to_string(),
        id: String::new(),
        received_at_ms: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_envelope_line_is_its_event_and_any_other_line_is_message_data() {
        let envelope = line_event(r#"{"event":"edit","id":"7","data":"{\"n\":1}","source":"x"}"#);
        assert_eq!(
            (
                envelope.event_type.as_str(),
                envelope.id.as_str(),
                envelope.data.as_str()
            ),
            ("edit", "7", r#"{"n":1}"#)
        );
        for raw in [
            r#"{"n":1}"#,
            "plain text",
            r#""a json string""#,
            r#"{"data":"no event"}"#,
        ] {
            let event = line_event(raw);
            assert_eq!(
                (event.event_type.as_str(), event.data.as_str()),
                ("message", raw)
            );
        }
    }
}
