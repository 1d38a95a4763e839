//! Many pipelines in one process: N pipelines (default 1,000) from one config file, each
//! reading its own SSE connection at R events/s (default 10), into the file sink. Reports
//! the process's resident memory and CPU once every pipeline is connected and events flow.
//!
//! Run: `cargo bench -p sse-ingest --bench many_pipelines` (release), or add
//! `--profile dev` for a quick look (dependencies are optimised in dev too).
//! `PIPELINES=N`, `RATE=R` (events/s per pipeline) and `WINDOW_S=S` (the measured window)
//! change the shape.

#![allow(clippy::unwrap_used)]

#[path = "../../tests/support/mod.rs"]
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::sse_server::{Response, SseServer, Step};
use support::{WithAdmin, sse_ingest};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let pipelines = setting("PIPELINES", 1000);
    let rate = setting("RATE", 10).max(1);
    let window = Duration::from_secs(setting("WINDOW_S", 20));
    // Long enough for start-up, the window and some slack; each connection paces itself.
    let events_per_connection = rate * (window.as_secs() + 120);
    let pause = Duration::from_millis(1000 / rate);
    let event = "{\"wiki\":\"enwiki\",\"title\":\"A page\",\"user\":\"someone\",\"bot\":false,\"length\":{\"old\":100,\"new\":120}}";
    let steps: Vec<Step> = (0..events_per_connection)
        .flat_map(|n| {
            [
                Step::Bytes(format!("id: {n}\ndata: {event}\n\n").into_bytes()),
                Step::Pause(pause),
            ]
        })
        .collect();
    let server = SseServer::always(Response::stream(steps));

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("many.toml");
    std::fs::write(&file, config(dir.path(), &server, pipelines)).unwrap();
    let mut command = sse_ingest();
    command.arg("run").arg("--config").arg(&file);
    let started = Instant::now();
    let running = WithAdmin::spawn(&mut command);
    let pid = running.child.id();

    // Every pipeline connected and events flowing.
    let connected = "sse_ingest_connected";
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let up = sum_of(&running, connected);
        if up >= pipelines as f64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {up} of {pipelines} pipelines connected: {}",
            running.stderr()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let start_up = started.elapsed();
    // Let start-up work (compilation, first connections) settle before measuring.
    std::thread::sleep(Duration::from_secs(5));

    let (cpu_before, events_before, at_before) = (
        process_cpu(pid),
        sum_of(&running, "sse_ingest_records_written_total"),
        Instant::now(),
    );
    std::thread::sleep(window);
    let (cpu_after, events_after, at_after) = (
        process_cpu(pid),
        sum_of(&running, "sse_ingest_records_written_total"),
        Instant::now(),
    );
    let (rss, peak) = (status_kib(pid, "VmRSS:"), status_kib(pid, "VmHWM:"));
    let threads = status_kib(pid, "Threads:");
    let stderr = running.kill();
    assert!(!stderr.contains("panicked"), "{stderr}");

    let seconds = (at_after - at_before).as_secs_f64();
    let cores = (cpu_after - cpu_before).as_secs_f64() / seconds;
    let events_per_second = (events_after - events_before) / seconds;
    println!(
        "{pipelines} pipelines at {rate} events/s each: all connected {start_up:.1?} after start; \
         over {seconds:.0} s: {events_per_second:.0} records/s written, CPU {:.1}% of one core \
         ({:.1} µs per record), RSS {:.0} MiB ({:.2} MiB per pipeline), peak {:.0} MiB, {threads} threads",
        cores * 100.0,
        (cpu_after - cpu_before).as_secs_f64() * 1e6 / (events_after - events_before).max(1.0),
        rss as f64 / 1024.0,
        rss as f64 / 1024.0 / pipelines as f64,
        peak as f64 / 1024.0,
    );
}

/// The config: `pipelines` file-sink pipelines, each on its own path of `server`.
fn config(dir: &Path, server: &SseServer, pipelines: u64) -> String {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    let mut text = format!(
        "state_dir = {:?}\ncache_dir = {:?}\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n[defaults]\nsink = \"file:{}\"\n",
        dir.join("state").display().to_string(),
        cache.display().to_string(),
        dir.join("out").display(),
    );
    for n in 0..pipelines {
        text.push_str(&format!(
            "\n[[pipeline]]\nname = \"p{n}\"\nurl = \"{}\"\n",
            server.url(&format!("/stream/{n}"))
        ));
    }
    text
}

/// The sum over pipelines of one series on `/metrics`.
fn sum_of(running: &WithAdmin, metric: &str) -> f64 {
    let Ok((_, text)) = support::http_request(running.port, "GET", "/metrics", b"") else {
        return 0.0;
    };
    let prefix = format!("{metric}{{");
    text.lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// User + system CPU time of process `pid` (fields 14 and 15 of /proc/PID/stat).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .unwrap_or_default();
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // After the name, state is field 3: utime (14) and stime (15) are at 11 and 12.
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// A numeric field of /proc/PID/status (kB for memory fields).
fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}
