//! `sse-ingest test-filter`: runs a filter on recorded events and prints or
//! checks the records it emits — unit tests for filter components, in CI.

use std::path::Path;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::cli::TestFilterArgs;
use crate::cli::exit::{self, Failure};
use crate::core::record::Record;
use crate::wasm::components;
use crate::wasm::filter_harness::FilterHarness;
use crate::wasm::source::Event;

/// Runs the filter; prints records as JSON lines, or compares them with `--expect`.
pub fn execute(args: TestFilterArgs) -> Result<u8, Failure> {
    let wasm = match components::builtin_filter(&args.filter) {
        Some(bytes) if !args.filter.ends_with(".wasm") => bytes.to_vec(),
        _ => std::fs::read(&args.filter)
            .map_err(|e| Failure::usage(format!("cannot read filter {}: {e}", args.filter)))?,
    };
    let config: Vec<(&str, &str)> = args
        .config
        .iter()
        .map(|pair| {
            pair.split_once('=').ok_or_else(|| {
                Failure::usage(format!("invalid --config `{pair}`: expected `key=value`"))
            })
        })
        .collect::<Result<_, _>>()?;
    let events = read_events(&args.input)?;
    let harness =
        FilterHarness::with_format(&wasm, &config, args.format.into()).map_err(Failure::usage)?;
    let records = harness.run(events).map_err(Failure::failed)?;
    let produced: Vec<Value> = records.iter().map(record_json).collect();
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

/// Events from an `.sse` capture (parsed like the source does) or JSON lines
/// (`{"event","id","data"}` objects, or plain strings taken as data).
fn read_events(path: &Path) -> Result<Vec<Event>, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", path.display())))?;
    if path.extension().is_some_and(|e| e == "sse") {
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
        parser.feed(&bytes, &mut collect);
        parser.finish(&mut collect);
        return Ok(events);
    }
    let text = String::from_utf8_lossy(&bytes);
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, line)| {
            let value: Value = serde_json::from_str(line)
                .map_err(|e| Failure::usage(format!("{} line {}: {e}", path.display(), n + 1)))?;
            let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
            Ok(match &value {
                Value::String(data) => Event {
                    event_type: "message".into(),
                    data: data.clone(),
                    id: String::new(),
                    received_at_ms: 0,
                },
                _ => Event {
                    event_type: field("event").unwrap_or_else(|| "message".into()),
                    data: field("data").ok_or_else(|| {
                        Failure::usage(format!(
                            "{} line {}: no `data` string",
                            path.display(),
                            n + 1
                        ))
                    })?,
                    id: field("id").unwrap_or_default(),
                    received_at_ms: value
                        .get("received_at_ms")
                        .and_then(Value::as_u64)
                        .unwrap_or(0),
                },
            })
        })
        .collect()
}
