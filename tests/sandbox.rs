//! Hostile filters against the sandbox, through the binary: ones that make the host copy
//! far more than their memory limit (through the 0.1 contract's `put-records`, the 0.2
//! contract's `routing.send` and a 0.2 answer that names one buffer many times), and two
//! that spin on every batch while the admin API must keep answering.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::sse_server::{Response, SseServer, Step};
use support::{WithAdmin, dead_letters, run_command, sse_ingest};

const LIMIT: Duration = Duration::from_secs(120);
const MIB: u64 = 1 << 20;
/// The default `--filter-memory-mib`.
const FILTER_MEMORY: u64 = 64 * MIB;
/// What one pipeline's process holds without a hostile filter is about 40 MiB (README's
/// figures); 64 leaves room for a debug build.
const NORMAL_RSS: u64 = 64 * MIB;

/// `id: N` / `data: event N` for `0..count`, then the connection stays open.
fn open_stream(count: u64) -> SseServer {
    let text: String = (0..count)
        .map(|n| format!("id: {n}\ndata: event {n}\n\n"))
        .collect();
    SseServer::always(Response::stream(vec![
        Step::Bytes(text.into_bytes()),
        Step::Pause(Duration::from_secs(3600)),
    ]))
}

fn terminate(running: WithAdmin) -> String {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(running.child.id().to_string())
        .status();
    let (status, stderr) = running.finish(LIMIT);
    assert!(status.success(), "{stderr}");
    stderr
}

/// The `memory-hog` test filter as built against `sse-ingest:pipeline@0.1.0` (committed):
/// its `when=flood records=N` calls `put-records` without end, each call naming one 8 MiB
/// buffer N times.
fn memory_hog_0_1() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/filters-0.1/memory_hog_filter.wasm")
        .display()
        .to_string()
}

/// Runs the memory-hog `filter` with `config` over 20 events, with the default limits;
/// checks the peak RSS stays under twice the limit plus the normal RSS; returns the dead
/// letters' reasons and stderr.
fn flood(filter: &str, config: &[&str]) -> (Vec<String>, String) {
    const EVENTS: u64 = 20;
    let server = open_stream(EVENTS);
    let state = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--sink", "discard", "--filter", filter]);
    for pair in config {
        command.args(["--filter-config", pair]);
    }
    command.args(["--batch-max-events", "5"]);
    let running = WithAdmin::start(&mut command);
    running.wait_for_metric(
        "sse_ingest_dead_letters_total{pipeline=\"default\"}",
        EVENTS as f64,
        LIMIT,
    );
    let peak = support::peak_rss_bytes(running.child.id());
    // The process is still serving: the sandbox stopped the filter, not the host.
    assert_eq!(running.get("/health").unwrap().0, 200);
    let stderr = terminate(running);
    let dead = dead_letters(&state.path().join("dead-letters"));
    assert_eq!(dead.len() as u64, EVENTS, "every event once: {stderr}");
    let reasons = dead
        .iter()
        .map(|letter| letter["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    eprintln!("flood {config:?}: peak RSS {} MiB", peak / MIB);
    assert!(
        peak < 2 * FILTER_MEMORY + NORMAL_RSS,
        "peak RSS {} MiB: {stderr}",
        peak / MIB
    );
    (reasons, stderr)
}

#[test]
fn one_put_records_call_naming_an_8_mib_buffer_15_times_is_stopped_by_the_hostcall_fuel() {
    let (reasons, stderr) = flood(&memory_hog_0_1(), &["when=flood", "records=15"]);
    assert!(
        reasons
            .iter()
            .all(|reason| reason.contains("too much data is being copied")),
        "{reasons:?}: {stderr}"
    );
}

#[test]
fn put_records_calls_past_the_memory_limit_in_one_batch_are_stopped_by_the_output_budget() {
    // 40 MiB a call: each call is within the hostcall fuel, the second passes the budget.
    let (reasons, stderr) = flood(&memory_hog_0_1(), &["when=flood", "records=5"]);
    assert!(
        reasons
            .iter()
            .all(|reason| reason.contains("exceeded its output budget")),
        "{reasons:?}: {stderr}"
    );
}

/// The memory-hog test filter built against `sse-ingest:filter@0.2.0`.
fn memory_hog() -> &'static str {
    sse_ingest::wasm::components::testing_filter_path("memory-hog").unwrap()
}

#[test]
fn an_answer_naming_an_8_mib_buffer_15_times_is_stopped_by_the_hostcall_fuel() {
    let (reasons, stderr) = flood(memory_hog(), &["when=flood-return", "records=15"]);
    assert!(
        reasons
            .iter()
            .all(|reason| reason.contains("too much data is being copied")),
        "{reasons:?}: {stderr}"
    );
}

#[test]
fn routing_sends_past_the_memory_limit_in_one_batch_are_stopped_by_the_output_budget() {
    // 8 MiB a call, without end: the ninth call of a batch passes the 64 MiB budget.
    let (reasons, stderr) = flood(memory_hog(), &["when=flood"]);
    assert!(
        reasons
            .iter()
            .all(|reason| reason.contains("exceeded its output budget")),
        "{reasons:?}: {stderr}"
    );
}

/// A config with two pipelines whose filters spin on every batch until their budget runs
/// out, and the admin API.
fn spinning_config(dir: &Path, url: &str) -> std::path::PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    let filter = sse_ingest::wasm::components::testing_filter_path("spin").unwrap();
    let mut text = format!(
        "state_dir = {:?}\ncache_dir = {:?}\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n\
         [defaults]\nsink = \"discard\"\nfilter = {filter:?}\nfilter_config = [\"when=always\"]\n\
         filter_cpu_budget_ms = 2000\nbatch_max_events = 1\n",
        dir.join("state").display().to_string(),
        cache.display().to_string(),
    );
    for name in ["spin-a", "spin-b"] {
        text.push_str(&format!(
            "\n[[pipeline]]\nname = \"{name}\"\nurl = \"{url}\"\n"
        ));
    }
    let file = dir.join("sse-ingest.toml");
    std::fs::write(&file, text).unwrap();
    file
}

#[test]
fn two_spinning_filters_leave_health_answering_within_50_ms_at_p99() {
    let server = open_stream(1_000);
    let dir = tempfile::tempdir().unwrap();
    let file = spinning_config(dir.path(), &server.url("/s"));
    let mut command = sse_ingest();
    command.args(["run", "--config"]).arg(&file);
    let running = WithAdmin::spawn(&mut command);
    // Both filters have spun through a whole budget once: they are busy now.
    for name in ["spin-a", "spin-b"] {
        running.wait_for_metric(
            &format!("sse_ingest_filter_traps_total{{pipeline=\"{name}\"}}"),
            1.0,
            LIMIT,
        );
    }
    let mut latencies: Vec<Duration> = (0..200)
        .map(|_| {
            let started = Instant::now();
            let (status, _) = running.get("/health").unwrap();
            assert_eq!(status, 200);
            started.elapsed()
        })
        .collect();
    // Still spinning at the end: the measurement was taken while they were busy.
    for name in ["spin-a", "spin-b"] {
        running.wait_for_metric(
            &format!("sse_ingest_filter_traps_total{{pipeline=\"{name}\"}}"),
            2.0,
            LIMIT,
        );
    }
    latencies.sort_unstable();
    let p50 = latencies[latencies.len() / 2];
    let p99 = latencies[latencies.len() * 99 / 100 - 1];
    eprintln!("/health beside two spinning filters: p50 {p50:?}, p99 {p99:?}");
    assert!(
        p99 <= Duration::from_millis(50),
        "p99 {p99:?} (p50 {p50:?})"
    );
    // Killed, not stopped: a stop would first run the queued events through the spinning
    // filters, two seconds each.
    let _ = running.kill();
}
