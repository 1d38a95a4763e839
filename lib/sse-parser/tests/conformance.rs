//! Runs every case of `tests/fixtures/sse-cases.jsonl` (schema: see the
//! conformance README the fixture was copied from) whole, at its listed
//! chunk offsets, one byte at a time (small inputs) and at seeded random
//! splits.

#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde::Deserialize;
use sse_parser::{Item, Parser, ParserConfig};

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/sse-cases.jsonl"
);
const BYTE_BY_BYTE_LIMIT: usize = 64 * 1024;
const RANDOM_SPLITS: u64 = 20;

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
    input_b64: String,
    #[serde(default)]
    chunks: Option<Vec<usize>>,
    expected: Vec<Expected>,
    final_last_event_id: String,
    final_retry_ms: Option<u64>,
    #[serde(default)]
    tags: Vec<String>,
}

#[derive(Debug, Deserialize, PartialEq)]
struct Expected {
    #[serde(rename = "type")]
    event_type: String,
    data: String,
    id: String,
    #[serde(default)]
    retry: Option<u64>,
}

#[derive(Debug, PartialEq)]
struct Outcome {
    events: Vec<Expected>,
    final_last_event_id: String,
    final_retry_ms: Option<u64>,
}

/// Feeds `chunks` then ends the stream.
fn run<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Result<Outcome, String> {
    // The spec keeps ids of any length; the product's 4 KiB bound is tested apart.
    let mut parser = Parser::new(ParserConfig {
        max_id_bytes: usize::MAX,
        ..ParserConfig::default()
    });
    let mut events = Vec::new();
    let mut oversized = 0;
    let mut sink = |item: Item| match item {
        Item::Event(e) => events.push(Expected {
            event_type: e.event_type,
            data: e.data,
            id: e.id,
            retry: e.retry,
        }),
        Item::Oversized { .. } | Item::OversizedId { .. } => oversized += 1,
    };
    for chunk in chunks {
        parser.feed(chunk, &mut sink);
    }
    parser.finish(&mut sink);
    if oversized != 0 {
        return Err(format!("{oversized} unexpected Oversized item(s)"));
    }
    Ok(Outcome {
        events,
        final_last_event_id: parser.last_event_id().to_owned(),
        final_retry_ms: parser.retry_ms(),
    })
}

/// Splits `input` at ascending `offsets` (repeats give empty chunks).
fn split_at<'a>(input: &'a [u8], offsets: &[usize]) -> Vec<&'a [u8]> {
    let mut chunks = Vec::with_capacity(offsets.len() + 1);
    let mut start = 0;
    for &end in offsets {
        chunks.push(&input[start..end]);
        start = end;
    }
    chunks.push(&input[start..]);
    chunks
}

/// Describes the first difference, or `None` if `got` matches `case`.
fn compare(case: &Case, got: &Outcome) -> Option<String> {
    // Cases whose per-event retry differs between readings of the spec.
    let loose_retry = case
        .tags
        .iter()
        .any(|t| t == "retry_scope" || t == "ambiguous");
    if got.events.len() != case.expected.len() {
        return Some(format!(
            "{} events, expected {}: got {}",
            got.events.len(),
            case.expected.len(),
            abbreviate(&got.events)
        ));
    }
    for (i, (g, e)) in got.events.iter().zip(&case.expected).enumerate() {
        let same = g.event_type == e.event_type
            && g.data == e.data
            && g.id == e.id
            && (loose_retry || g.retry == e.retry);
        if !same {
            return Some(format!(
                "event {i}: got {}, expected {}",
                abbreviate(core::slice::from_ref(g)),
                abbreviate(core::slice::from_ref(e))
            ));
        }
    }
    if got.final_last_event_id != case.final_last_event_id {
        return Some(format!(
            "final last event id {:?}, expected {:?}",
            got.final_last_event_id, case.final_last_event_id
        ));
    }
    if !loose_retry && got.final_retry_ms != case.final_retry_ms {
        return Some(format!(
            "final retry {:?}, expected {:?}",
            got.final_retry_ms, case.final_retry_ms
        ));
    }
    None
}

fn abbreviate(events: &[Expected]) -> String {
    let s = format!("{events:?}");
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}… ({} bytes)", &s[..end], s.len())
    } else {
        s
    }
}

#[test]
fn every_conformance_case_passes_at_every_split() {
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let total_lines = text.lines().count();
    let mut cases_run = 0;
    let mut failures = Vec::new();
    let mut names = std::collections::HashSet::new();

    for (index, line) in lines.iter().enumerate() {
        let case: Case = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("fixture line {}: {e}", index + 1));
        assert!(names.insert(case.name.clone()), "duplicate {}", case.name);
        let input = base64::engine::general_purpose::STANDARD
            .decode(&case.input_b64)
            .unwrap_or_else(|e| panic!("{}: bad base64: {e}", case.name));

        let mut modes: Vec<(String, Vec<&[u8]>)> = vec![("whole".into(), vec![&input[..]])];
        if let Some(offsets) = &case.chunks {
            assert!(
                offsets.windows(2).all(|w| w[0] <= w[1])
                    && offsets.last().is_none_or(|&o| o <= input.len()),
                "{}: bad chunk offsets",
                case.name
            );
            modes.push(("listed chunks".into(), split_at(&input, offsets)));
        }
        if input.len() <= BYTE_BY_BYTE_LIMIT {
            modes.push(("byte by byte".into(), input.chunks(1).collect()));
        }
        for seed in 0..RANDOM_SPLITS {
            let mut rng = StdRng::seed_from_u64(seed ^ 0x5e5e_0000);
            let max_cuts = input.len().clamp(1, 512);
            let cuts = rng.random_range(1..=max_cuts);
            let mut offsets: Vec<usize> = (0..cuts)
                .map(|_| rng.random_range(0..=input.len()))
                .collect();
            offsets.sort_unstable();
            modes.push((format!("random seed {seed}"), split_at(&input, &offsets)));
        }

        for (mode, chunks) in &modes {
            let verdict = match run(chunks.iter().copied()) {
                Ok(got) => compare(&case, &got),
                Err(e) => Some(e),
            };
            if let Some(why) = verdict {
                failures.push(format!("{} [{mode}]: {why}", case.name));
            }
        }
        cases_run += 1;
    }

    assert_eq!(
        cases_run, total_lines,
        "cases run must equal fixture lines (loader broken?)"
    );
    assert!(cases_run > 0, "no cases loaded");
    assert!(
        failures.is_empty(),
        "{} failure(s) out of {cases_run} cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
