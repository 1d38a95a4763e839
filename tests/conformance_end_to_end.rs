//! Every SSE conformance case through the real path: a server on 127.0.0.1
//! sends the case's bytes at its chunk boundaries, the source component
//! parses them, the default filter writes envelopes to stdout.

use crate::support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use support::sse_server::{Response, SseServer, Step};
use support::{fixtures, run_command, run_with_limit, stderr_of};

/// The case's bytes split at its `chunks` offsets (or whole), with short
/// pauses so that each piece reaches the client as its own read.
fn steps(input: &[u8], chunks: Option<&Vec<Value>>) -> Vec<Step> {
    let mut offsets: Vec<usize> = chunks
        .map(|c| {
            c.iter()
                .filter_map(Value::as_u64)
                .map(|o| o as usize)
                .collect()
        })
        .unwrap_or_default();
    offsets.push(input.len());
    // Pauses make each piece its own read; for cases with thousands of
    // pieces they would take minutes, and the parser's unit tests cover
    // those splits exactly, so the pieces may coalesce there.
    let pause = if offsets.len() <= 100 {
        Duration::from_millis(5)
    } else {
        Duration::ZERO
    };
    let mut steps = Vec::new();
    let mut start = 0;
    for end in offsets {
        let end = end.min(input.len());
        steps.push(Step::Bytes(input[start..end].to_vec()));
        if !pause.is_zero() {
            steps.push(Step::Pause(pause));
        }
        start = end;
    }
    steps
}

/// The longest id the product keeps (host/src/config/sizing.rs).
const MAX_ID_BYTES: usize = 4096;

#[test]
fn every_conformance_case_passes_through_the_real_binary() {
    let text = std::fs::read_to_string(fixtures().join("sse-cases.jsonl")).unwrap();
    let cases: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        cases.len() >= 90,
        "expected the whole conformance file, got {} cases",
        cases.len()
    );
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let input = base64::engine::general_purpose::STANDARD
            .decode(case["input_b64"].as_str().unwrap())
            .unwrap();
        let server = SseServer::always(Response::stream(steps(&input, case["chunks"].as_array())));
        let state = tempfile::tempdir().unwrap();
        let mut command = run_command(&server.url("/case"), state.path());
        command.args(["--once", "--sink", "stdout", "--format", "envelope"]);
        let output = run_with_limit(&mut command, Duration::from_secs(30));
        if !output.status.success() {
            failures.push(format!(
                "{name}: exit {:?}: {}",
                output.status,
                stderr_of(&output)
            ));
            continue;
        }
        let got: Vec<(String, String, String)> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| {
                let v: Value = serde_json::from_str(line).unwrap();
                (
                    v["event"].as_str().unwrap().to_string(),
                    v["data"].as_str().unwrap().to_string(),
                    v["id"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let expected: Vec<(String, String, String)> = case["expected"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let id = e["id"].as_str().unwrap();
                (
                    e["type"].as_str().unwrap().to_string(),
                    e["data"].as_str().unwrap().to_string(),
                    // The product keeps ids of up to 4 KiB (MAX_ID_BYTES): an event whose id
                    // is longer is delivered without it (tests/large_events.rs).
                    if id.len() > MAX_ID_BYTES {
                        String::new()
                    } else {
                        id.to_string()
                    },
                )
            })
            .collect();
        if got != expected {
            failures.push(format!("{name}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
