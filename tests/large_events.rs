//! Events of every size `--max-event-bytes` admits pass with the default settings: batches
//! are bounded by bytes, and the components' memory follows from that bound
//! (host/src/config/sizing.rs). Ids are bounded too: a huge one is delivered without it.
//!
//! Each run reads a stream that stays open after its last event (as a live server's does),
//! waits until the sink has acknowledged every record, reads the process's peak resident
//! memory (VmHWM), then stops it with SIGTERM.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::sse_server::{Gate, Response, SseServer, Step};
use support::{WithAdmin, dead_letters, file_sink, file_sink_lines, run_command};

const LIMIT: Duration = Duration::from_secs(300);
/// The bound on the whole process, whatever the event sizes.
const PEAK_RSS_LIMIT_KIB: u64 = 256 * 1024;
const KIB: usize = 1024;

/// A stream of `frames` (one write each), then silence until the test lets it end.
fn open_stream(frames: Vec<String>, gate: &Gate) -> SseServer {
    let steps: Vec<Step> = frames
        .into_iter()
        .map(|frame| Step::Bytes(frame.into_bytes()))
        .chain([Step::Wait(gate.clone())])
        .collect();
    let steps = std::sync::Mutex::new(Some(steps));
    SseServer::start(move |_, _| {
        // One connection is expected; a reconnect would get an empty, open stream.
        let body = steps
            .lock()
            .unwrap()
            .take()
            .unwrap_or_else(|| vec![Step::Wait(Gate::default())]);
        support::sse_server::Answer::Respond(Response::stream(body))
    })
}

/// `n` as the first ten characters of a payload of exactly `size` bytes.
fn numbered_payload(n: usize, size: usize) -> String {
    let mut data = format!("{n:010}");
    data.extend(std::iter::repeat_n('x', size.saturating_sub(10)));
    data
}

/// A Wikimedia-shaped JSON event of about `size` bytes that every built-in filter keeps
/// with the configurations below.
fn json_payload(n: usize, size: usize) -> String {
    let head = format!(
        "{{\"id\":{n},\"wiki\":\"enwiki\",\"type\":\"edit\",\"title\":\"T\",\"user\":\"u\",\
         \"bot\":false,\"timestamp\":1,\"length\":{{\"old\":1,\"new\":2}},\"pad\":\""
    );
    let pad = size.saturating_sub(head.len() + 2);
    let mut data = head;
    data.extend(std::iter::repeat_n('x', pad));
    data.push_str("\"}");
    data
}

/// What one run left behind.
struct Ran {
    peak_rss_kib: u64,
    stderr: String,
}

/// Runs the default pipeline on `frames` with `extra` flags until `records` are
/// acknowledged; checks it stops cleanly and wrote no dead letter.
fn run_until_written(frames: Vec<String>, records: usize, state: &Path, extra: &[&str]) -> Ran {
    let gate = Gate::default();
    let server = open_stream(frames, &gate);
    let mut command: Command = run_command(&server.url("/stream"), state);
    command.args(extra);
    let started = std::time::Instant::now();
    let running = WithAdmin::start(&mut command);
    running.wait_for_metric(
        "sse_ingest_records_written_total{pipeline=\"default\"}",
        records as f64,
        LIMIT,
    );
    let elapsed = started.elapsed();
    let peak_rss_kib = support::peak_rss_bytes(running.child.id()) / 1024;
    let written = running
        .metric("sse_ingest_records_written_total{pipeline=\"default\"}")
        .unwrap();
    assert_eq!(written, records as f64, "more records than events");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(running.child.id().to_string())
        .status();
    gate.open();
    let (status, stderr) = running.finish(LIMIT);
    assert!(status.success(), "{stderr}");
    assert!(
        dead_letters(&state.join("dead-letters")).is_empty(),
        "dead letters were written: {stderr}"
    );
    assert!(
        peak_rss_kib <= PEAK_RSS_LIMIT_KIB,
        "peak RSS {peak_rss_kib} KiB is over {PEAK_RSS_LIMIT_KIB} KiB"
    );
    // The figures the issue asks for (run with --nocapture); no bound on time here, since CI
    // shares its cores with builds.
    eprintln!(
        "{records} records in {:.2} s ({:.0} events/s, start-up included); peak RSS {peak_rss_kib} KiB",
        elapsed.as_secs_f64(),
        records as f64 / elapsed.as_secs_f64()
    );
    Ran {
        peak_rss_kib,
        stderr,
    }
}

/// Checks the file sink holds exactly the payloads, in order (raw format: one per line).
fn assert_written_in_order(out: &Path, sizes: &[usize]) {
    let lines = file_sink_lines(out);
    assert_eq!(lines.len(), sizes.len());
    for (n, (line, size)) in lines.iter().zip(sizes).enumerate() {
        assert_eq!(line.len(), *size, "record {n} has the wrong size");
        assert_eq!(
            &line[..10],
            format!("{n:010}"),
            "record {n} is out of order"
        );
    }
}

/// Numbered payloads of these sizes through the default pipeline into files: every one
/// arrives, whole and in order.
fn numbered_events_pass_through_in_order(sizes: &[usize]) {
    let frames = sizes
        .iter()
        .enumerate()
        .map(|(n, size)| format!("id: {n}\ndata: {}\n\n", numbered_payload(n, *size)))
        .collect();
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    run_until_written(
        frames,
        sizes.len(),
        state.path(),
        &["--sink", &file_sink(out.path())],
    );
    assert_written_in_order(out.path(), sizes);
}

#[test]
fn two_thousand_events_of_300_kb_pass_through_with_the_default_settings() {
    numbered_events_pass_through_in_order(&[300 * 1000; 2000]);
}

#[test]
fn fifty_events_of_four_million_bytes_pass_through_with_the_default_settings() {
    numbered_events_pass_through_in_order(&[4_000_000; 50]);
}

#[test]
fn a_thousand_events_of_every_size_from_100_bytes_to_a_mebibyte_pass_through() {
    use rand::{Rng as _, SeedableRng as _};
    let mut random = rand::rngs::StdRng::seed_from_u64(21);
    let sizes: Vec<usize> = (0..1000)
        .map(|_| random.random_range(100..=KIB * KIB))
        .collect();
    numbered_events_pass_through_in_order(&sizes);
}

/// 2,000 JSON events of 300 KB through a built-in filter configured to keep them all
/// (the discard sink stands in for the file sink: the passthrough tests check content;
/// `LARGE_EVENTS_FILTER_SINK=file` measures these with the file sink instead).
fn built_in_filter_keeps_two_thousand_events_of_300_kb(filter_flags: &[&str]) {
    let frames = (0..2000)
        .map(|n| {
            format!(
                "event: edit\nid: {n}\ndata: {}\n\n",
                json_payload(n, 300 * 1000)
            )
        })
        .collect();
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = file_sink(out.path());
    let sink = match std::env::var("LARGE_EVENTS_FILTER_SINK").as_deref() {
        Ok("file") => file.as_str(),
        _ => "discard",
    };
    let mut flags = vec!["--sink", sink];
    flags.extend_from_slice(filter_flags);
    run_until_written(frames, 2000, state.path(), &flags);
}

#[test]
fn the_types_filter_keeps_two_thousand_events_of_300_kb() {
    built_in_filter_keeps_two_thousand_events_of_300_kb(&[
        "--filter",
        "types",
        "--filter-config",
        "types=edit",
    ]);
}

#[test]
fn the_json_match_filter_keeps_two_thousand_events_of_300_kb() {
    built_in_filter_keeps_two_thousand_events_of_300_kb(&[
        "--filter",
        "json-match",
        "--filter-config",
        "where=/wiki=enwiki",
    ]);
}

#[test]
fn the_wikimedia_filter_keeps_two_thousand_events_of_300_kb() {
    built_in_filter_keeps_two_thousand_events_of_300_kb(&["--filter", "wikimedia"]);
}

#[test]
fn an_event_with_a_mebibyte_id_is_delivered_with_the_two_hundred_after_it() {
    let huge_id = "i".repeat(KIB * KIB);
    let mut frames = vec![format!(
        "id: {huge_id}\ndata: {}\n\n",
        numbered_payload(0, 20)
    )];
    frames.extend((1..=200).map(|n| format!("id: {n}\ndata: {}\n\n", numbered_payload(n, 20))));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let ran = run_until_written(
        frames,
        201,
        state.path(),
        &["--sink", &file_sink(out.path())],
    );
    assert_written_in_order(out.path(), &[20; 201]);
    assert!(
        ran.stderr.contains("an event's id is too long to keep"),
        "{}",
        ran.stderr
    );
    // The checkpoint holds the last id, never the huge one.
    let checkpoint =
        std::fs::read_to_string(state.path().join("pipelines/default/checkpoint.json")).unwrap();
    assert!(checkpoint.contains("\"200\""), "{checkpoint}");
    assert!(checkpoint.len() < 4096, "{} bytes", checkpoint.len());
}

#[test]
fn four_hundred_distinct_one_megabyte_ids_stay_under_100_mb_of_memory() {
    let frames = (0..400)
        .map(|n| {
            let id = format!("{n:07}{}", "i".repeat(1_000_000 - 7));
            format!("id: {id}\ndata: {}\n\n", numbered_payload(n, 20))
        })
        .collect();
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let ran = run_until_written(
        frames,
        400,
        state.path(),
        &["--sink", &file_sink(out.path())],
    );
    assert_written_in_order(out.path(), &[20; 400]);
    assert!(
        ran.peak_rss_kib < 100 * 1000,
        "peak RSS {} KiB",
        ran.peak_rss_kib
    );
}
