//! End-to-end throughput through the real binary: an SSE server on
//! 127.0.0.1 → source component → filter → file sink, with the binary's CPU
//! time per event.
//!
//! Run: `cargo bench -p sse-ingest --bench throughput` (add `--profile dev`
//! to skip the release build; dependencies are optimised in dev too).

#![allow(clippy::unwrap_used)]

#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::sse_server::{Response, SseServer, Step};
use support::{isolated, run_with_limit, sse_ingest, wikimedia_events};

fn main() {
    let events = wikimedia_events();
    let total = 200_000usize;
    let mut body = Vec::new();
    for n in 0..total {
        body.extend_from_slice(
            format!(
                "event: message\nid: {n}\ndata: {}\n\n",
                events[n % events.len()]
            )
            .as_bytes(),
        );
    }
    let megabytes = body.len() as f64 / 1e6;
    let steps: Vec<Step> = body
        .chunks(64 * 1024)
        .map(|c| Step::Bytes(c.to_vec()))
        .collect();
    for filter in ["passthrough", "json-match", "wikimedia"] {
        let server = SseServer::always(Response::stream(steps.clone()));
        let state = tempfile::tempdir().unwrap();
        let mut command = sse_ingest();
        command.args([
            "run",
            "--once",
            "--url",
            &server.url("/s"),
            "--filter",
            filter,
        ]);
        command
            .arg("--sink")
            .arg(format!("file:{}", state.path().join("out").display()));
        if filter == "json-match" {
            command.args(["--filter-config", "where=/bot=false"]);
        }
        isolated(&mut command, state.path());
        let before = children_cpu();
        let started = Instant::now();
        let output = run_with_limit(&mut command, Duration::from_secs(600));
        let wall = started.elapsed();
        let cpu = children_cpu() - before;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        println!(
            "{filter:>12}: {total} events ({megabytes:.0} MB) in {wall:.2?}: {:.0} events/s, {:.1} MB/s, {:.2} µs CPU/event (wall includes start-up)",
            total as f64 / wall.as_secs_f64(),
            megabytes / wall.as_secs_f64(),
            cpu.as_secs_f64() * 1e6 / total as f64
        );
    }
}

/// User + system CPU time of finished children, from /proc/self/stat (fields 16 and 17, in clock ticks).
fn children_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name: state is field 3, so cutime (16) and cstime (17) are at 13 and 14.
    let ticks: u64 = fields.get(13).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(14).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}
