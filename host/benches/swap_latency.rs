//! Swap latency: from a swap request to the first batch handled by the new
//! filter, through the real binary and its admin API, while events flow. It swaps
//! between two built-in filters, as a rollback or an A/B flip does.
//!
//! Run: `cargo bench -p sse-ingest --bench swap_latency` (add `--profile dev`
//! to skip the release build; dependencies are optimised in dev too).

#![allow(clippy::unwrap_used)]

#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use support::sse_server::{Response, SseServer, Step};
use support::{WithAdmin, builtin_filter, isolated, sse_ingest, swap_filter, wait_for_admin};

/// Enough swaps for a p99 that is not simply the maximum.
const SWAPS: usize = 100;

fn main() {
    let state = tempfile::tempdir().unwrap();
    let out = state.path().join("out");
    // The file sink, as deployed, and the discard sink: a batch waits for the sink's write
    // before the next swap can be installed, so a write the kernel holds up (a journal
    // commit, dirty-page throttling) shows in the first one only.
    for sink in [format!("file:{}", out.display()), "discard".to_string()] {
        println!("--sink {}", sink.split(':').next().unwrap_or_default());
        swap_while_events_flow(&sink, &state.path().join(sink.len().to_string()));
    }
}

fn swap_while_events_flow(sink: &str, state: &std::path::Path) {
    // A steady stream: 10 events every 2 ms for ~30 s at most.
    let steps: Vec<Step> = (0..15_000u64)
        .flat_map(|chunk| {
            let text: String = (chunk * 10..chunk * 10 + 10)
                .map(|n| {
                    format!(
                        "id: {n}\ndata: {{\"id\":{n},\"wiki\":\"enwiki\",\"type\":\"edit\"}}\n\n"
                    )
                })
                .collect();
            [
                Step::Bytes(text.into_bytes()),
                Step::Pause(Duration::from_millis(2)),
            ]
        })
        .collect();
    let server = SseServer::always(Response::stream(steps));
    let mut command = sse_ingest();
    command.args(["run", "--once", "--url", &server.url("/s"), "--sink", sink]);
    isolated(&mut command, state);
    let running = WithAdmin::start(&mut command);
    wait_for_admin(running.port, Duration::from_secs(30));
    // With the admin API on, the built-in filters are compiled beside the pipeline once it
    // runs (`Components::compile_builtin_filters_ahead`); swaps start after that.
    running.wait_for_log("built-in filters ready for swaps", Duration::from_secs(60));

    let filters = [builtin_filter("wikimedia"), builtin_filter("json-match")];
    let mut round_trips = Vec::new();
    for n in 0..SWAPS {
        let started = Instant::now();
        let (status, body) = swap_filter(running.port, "default", "", &filters[n % 2]);
        assert_eq!(status, 200, "{body}");
        round_trips.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = std::process::Command::new("kill")
        .arg("-INT")
        .arg(running.child.id().to_string())
        .status();
    let (_, stderr) = running.finish(Duration::from_secs(60));
    let after_ready = stderr
        .split_once("built-in filters ready for swaps")
        .map_or("", |(_, after)| after);
    println!(
        "components compiled during the swaps: {}",
        after_ready.matches("filter compiled filter=").count()
    );
    let mut latencies = logged_micros(&stderr, "first batch on the new filter", "swap_latency_us=");
    let mut installs = logged_micros(&stderr, "filter swapped", "prepared_in_us=");
    // Reported apart: the first swap to each of the two filters is the first run of its
    // component in this process (compiled ahead, but never instantiated before).
    let first = filters.len().min(latencies.len());
    println!(
        "first swap to each filter, request → first batch: {:?}",
        &latencies[..first]
    );
    report(
        "request → first batch on the new filter, every swap",
        &mut latencies.clone(),
    );
    report(
        "request → first batch on the new filter, after the first swap to each",
        &mut latencies[first..],
    );
    let first = filters.len().min(installs.len());
    report(
        "request → installed (find, instantiate, probe, install), after the first swap to each",
        &mut installs[first..],
    );
    report(
        "admin API round trip (validate + install)",
        &mut round_trips,
    );
}

/// The durations (in µs after `field`) of the log lines that contain `message`, in order.
fn logged_micros(log: &str, message: &str, field: &str) -> Vec<Duration> {
    log.lines()
        .filter(|l| l.contains(message))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix(field)))
        .filter_map(|v| v.parse().ok())
        .map(Duration::from_micros)
        .collect()
}

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    if samples.is_empty() {
        println!("{what}: no samples");
        return;
    }
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    println!(
        "{what}: n={} min={:?} median={:?} p95={:?} p99={:?} max={:?}",
        samples.len(),
        samples[0],
        at(0.5),
        at(0.95),
        at(0.99),
        samples[samples.len() - 1]
    );
}
