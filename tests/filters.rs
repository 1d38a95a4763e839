//! Filter components: live swaps with zero loss, refusals, rollback, the
//! sandbox, `--watch`, `test-filter` and `filters export`, through the real binary.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::sse_server::{Gate, Response, SseServer, Step};
use support::{
    WithAdmin, assert_exit_saying, builtin_filter, dead_letters, file_sink, file_sink_lines,
    http_request, run_command, run_with_limit, sse_ingest, stderr_of, swap_filter, wait_for_admin,
};

const LIMIT: Duration = Duration::from_secs(120);

/// The default pipeline's written-records series on `/metrics`.
const WRITTEN: &str = "sse_ingest_records_written_total{pipeline=\"default\"}";

/// A recentchange-shaped event whose `id` field is its number.
fn wiki_event(n: u64) -> String {
    format!(
        r#"{{"id":{n},"type":"edit","wiki":"enwiki","title":"Page {n}","user":"u{}","bot":false,"timestamp":1690000000,"length":{{"old":100,"new":{}}}}}"#,
        n % 7,
        100 + n % 13
    )
}

/// `count` events in chunks of `per_chunk`, pausing `pause` between chunks.
fn numbered_stream(count: u64, per_chunk: u64, pause: Duration) -> Vec<Step> {
    let mut steps = Vec::new();
    let mut n = 0;
    while n < count {
        let end = (n + per_chunk).min(count);
        let text: String = (n..end)
            .map(|i| format!("id: {i}\ndata: {}\n\n", wiki_event(i)))
            .collect();
        steps.push(Step::Bytes(text.into_bytes()));
        if !pause.is_zero() {
            steps.push(Step::Pause(pause));
        }
        n = end;
    }
    steps
}

/// `run --once` of `server`'s stream into a file sink under `out`, with `extra` flags.
fn once_into_files(
    server: &SseServer,
    state: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> std::process::Command {
    let mut command = run_command(&server.url("/stream"), state);
    command.arg("--once");
    command.args(["--sink", &file_sink(out)]);
    command.args(extra);
    command
}

/// Starts a `--once` run into files with the admin API on a port the system chose;
/// waits until the pipeline is reachable through it.
fn start_run_with_admin(
    server: &SseServer,
    state: &std::path::Path,
    out: &std::path::Path,
    extra: &[&str],
) -> WithAdmin {
    let running = WithAdmin::start(&mut once_into_files(server, state, out, extra));
    wait_for_admin(running.port, Duration::from_secs(30));
    running
}

fn swap(port: u16, filter: &[u8], query: &str) -> (u16, String) {
    swap_filter(port, "default", query, filter)
}

#[test]
fn swap_during_stream_loses_no_event() {
    const TOTAL: u64 = 100_000;
    // 100 chunks 25 ms apart: the stream lasts at least 2.5 s however fast the machine
    // is, time for a swap every 50 ms or so (a stream over too soon saw only 4 swaps).
    let server = SseServer::always(Response::stream(numbered_stream(
        TOTAL,
        1_000,
        Duration::from_millis(25),
    )));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut running = start_run_with_admin(
        &server,
        state.path(),
        out.path(),
        &["--filter", "json-match"],
    );
    let port = running.port;
    let filters = [builtin_filter("wikimedia"), builtin_filter("json-match")];
    let mut swaps = 0;
    let status = loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            break status;
        }
        if let (200, _) = swap_filter(port, "default", "", &filters[swaps % 2]) {
            swaps += 1;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_, stderr) = running.finish(LIMIT);
    assert!(status.success(), "{stderr}");
    assert_eq!(
        server.connections(),
        1,
        "a swap must not reopen the connection"
    );

    // wikimedia emits the compact projection (it has `delta`), json-match the event as it came.
    let lines = file_sink_lines(out.path());
    assert_eq!(lines.len() as u64, TOTAL, "lost or duplicated records");
    let mut runs = 0;
    let mut previous_shape = None;
    for (n, line) in lines.iter().enumerate() {
        let record: Value = serde_json::from_str(line).unwrap();
        assert_eq!(
            record["id"].as_u64(),
            Some(n as u64),
            "records out of order at {n}"
        );
        let shape = record.get("delta").is_some();
        if previous_shape != Some(shape) {
            runs += 1;
            previous_shape = Some(shape);
        }
    }
    assert!(swaps >= 5, "only {swaps} swaps happened during the stream");
    assert!(
        runs >= 3,
        "the stream saw only {runs} filter versions; swaps did not take effect mid-stream"
    );
    eprintln!("{swaps} swaps, {runs} filter runs over {TOTAL} events");
}

#[test]
fn with_the_admin_api_on_a_swap_to_a_built_in_filter_waits_for_no_compiling() {
    // The stream waits after its first 10 events until both swaps have landed.
    let gate = Gate::default();
    let mut steps = numbered_stream(20, 10, Duration::ZERO);
    steps.insert(1, Step::Wait(gate.clone()));
    let server = SseServer::always(Response::stream(steps));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let running = start_run_with_admin(&server, state.path(), out.path(), &[]);
    // passthrough runs; the other three built-ins are compiled beside it.
    running.wait_for_log("built-in filters ready for swaps compiled=3", LIMIT);
    let before = running.stderr();
    for name in ["json-match", "wikimedia"] {
        let (status, body) = swap(running.port, &builtin_filter(name), "");
        assert_eq!(status, 200, "{body}");
    }
    support::wait_until(
        "two swaps in the log",
        LIMIT,
        || running.stderr().matches("filter swapped").count() == 2,
        || running.stderr(),
    );
    let stderr = running.stderr();
    assert_eq!(
        compiled(&stderr),
        compiled(&before),
        "a swap compiled a built-in filter again: {stderr}"
    );
    gate.open();
    let (exit, stderr) = running.finish(LIMIT);
    assert!(exit.success(), "{stderr}");
    assert_eq!(file_sink_lines(out.path()).len(), 20, "{stderr}");
}

/// The `filter compiled` log lines in `stderr`, one per component compiled or loaded.
fn compiled(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.contains("filter compiled filter="))
        .collect()
}

#[test]
fn bad_swaps_are_refused_with_a_reason_and_the_running_filter_stays() {
    // The stream stays open (quiet) long enough for every refusal below.
    let mut steps = numbered_stream(300, 10, Duration::from_millis(10));
    steps.push(Step::Pause(Duration::from_secs(6)));
    let server = SseServer::always(Response::stream(steps));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let running = start_run_with_admin(&server, state.path(), out.path(), &[]);
    let port = running.port;

    let (status, body) = swap(port, b"this is not wasm", "");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("not a valid component"), "{body}");

    // The source component is of another world, and imports HTTP and clocks.
    let source = std::fs::read(env!("SSE_INGEST_SOURCE_WASM")).unwrap();
    let (status, body) = swap(port, &source, "");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("not a usable filter component"), "{body}");
    assert!(body.contains("a capability filters do not get"), "{body}");

    let trap =
        std::fs::read(sse_ingest::wasm::components::testing_filter_path("trap").unwrap()).unwrap();
    let (status, body) = swap(port, &trap, "config=when%3Dalways");
    assert_eq!(status, 422, "{body}");
    assert!(body.contains("probe batch"), "{body}");

    let (status, body) = swap(port, &builtin_filter("types"), "");
    assert_eq!(status, 422, "a filter refusing its configuration: {body}");

    // The CLI says the same, with a non-zero exit.
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"junk").unwrap();
    let cli = run_with_limit(
        sse_ingest()
            .args(["swap", "--admin", &format!("127.0.0.1:{port}"), "--filter"])
            .arg(junk.path()),
        LIMIT,
    );
    assert_exit_saying(&cli, 1, "swap refused");

    let (_, pipelines) = http_request(port, "GET", "/pipelines", b"").unwrap();
    assert!(pipelines.contains(r#""filter_version":1"#), "{pipelines}");
    let (exit, stderr) = running.finish(LIMIT);
    assert!(exit.success(), "{stderr}");
    let lines = file_sink_lines(out.path());
    assert_eq!(lines.len(), 300);
    assert!(
        lines
            .iter()
            .enumerate()
            .all(|(n, l)| *l == wiki_event(n as u64)),
        "the passthrough output changed"
    );
}

/// Runs a misbehaving filter over 60 events where event 30's data makes it
/// misbehave; returns (delivered lines, dead letters, stderr).
fn contain(kind: &str, extra: &[&str]) -> (Vec<String>, Vec<Value>, String) {
    let body: String = (0..60u64)
        .map(|n| {
            let data = if n == 30 {
                kind.to_string()
            } else {
                format!("event {n}")
            };
            format!("id: {n}\ndata: {data}\n\n")
        })
        .collect();
    let steps = body
        .as_bytes()
        .chunks(256)
        .map(|c| Step::Bytes(c.to_vec()))
        .collect();
    let server = SseServer::always(Response::stream(steps));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dead = tempfile::tempdir().unwrap();
    let filter = sse_ingest::wasm::components::testing_filter_path(kind).unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--once", "--filter", filter, "--batch-max-events", "10"]);
    command.args(["--sink", &file_sink(out.path())]);
    command
        .arg("--dead-letter")
        .arg(format!("file:{}", dead.path().display()));
    command
        .args(["--filter-cpu-budget-ms", "200", "--filter-memory-mib", "16"])
        // Small events and batches, so that 16 MiB holds the largest batch (a smaller
        // filter memory than the batch bound needs is refused at start).
        .args(["--max-event-bytes", "65536", "--batch-max-bytes", "65536"])
        .args(extra);
    let output = run_with_limit(&mut command, LIMIT);
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{kind}: {stderr}");
    (
        file_sink_lines(out.path()),
        dead_letters(dead.path()),
        stderr,
    )
}

fn assert_contained(kind: &str, reason_words: &str) {
    let started = Instant::now();
    let (delivered, dead, stderr) = contain(kind, &[]);
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        !dead.is_empty(),
        "{kind}: nothing was dead-lettered: {stderr}"
    );
    let bad = dead
        .iter()
        .find(|d| d["event"]["data"] == kind)
        .expect("the bad event is a dead letter");
    let reason = bad["reason"].as_str().unwrap();
    assert!(reason.contains(reason_words), "{kind}: reason {reason:?}");
    // Nothing is lost: every event is either delivered or a dead letter.
    let mut seen: Vec<String> = delivered;
    seen.extend(
        dead.iter()
            .map(|d| d["event"]["data"].as_str().unwrap().to_string()),
    );
    assert_eq!(seen.len(), 60, "{kind}: {stderr}");
    assert!(stderr.contains("filter failed on a batch"), "{stderr}");
}

#[test]
fn a_trapping_filter_dead_letters_its_batch_and_the_pipeline_goes_on() {
    assert_contained("trap", "panicked");
}

#[test]
fn a_filter_in_an_endless_loop_is_stopped_by_its_cpu_budget() {
    assert_contained("spin", "CPU budget");
}

#[test]
fn a_filter_that_hogs_memory_is_stopped_by_its_memory_limit() {
    assert_contained("memory-hog", "exceeded its memory limit");
}

#[test]
fn on_filter_error_stop_ends_the_pipeline_with_the_reason() {
    let server = SseServer::always(Response::text("data: trap\n\n"));
    let state = tempfile::tempdir().unwrap();
    let filter = sse_ingest::wasm::components::testing_filter_path("trap").unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--once", "--sink", "stdout", "--filter", filter]);
    command.args(["--on-filter-error", "stop"]);
    let output = run_with_limit(&mut command, LIMIT);
    assert_exit_saying(&output, 1, "trapped");
}

#[test]
fn a_swapped_filter_that_fails_on_probation_is_rolled_back_and_the_batch_rerun() {
    // The stream waits before event 100 (data `trap`) until the swap has landed.
    let gate = Gate::default();
    let mut steps = numbered_stream(100, 10, Duration::ZERO);
    steps.push(Step::Wait(gate.clone()));
    steps.push(Step::Bytes(
        b"id: 100\ndata: trap\n\nid: 101\ndata: after\n\n".to_vec(),
    ));
    let server = SseServer::always(Response::stream(steps));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let running = start_run_with_admin(&server, state.path(), out.path(), &[]);
    let port = running.port;
    // Swap once the first 100 events are written, while the stream waits before `trap`.
    running.wait_for_metric(WRITTEN, 100.0, LIMIT);
    let trap =
        std::fs::read(sse_ingest::wasm::components::testing_filter_path("trap").unwrap()).unwrap();
    let (status, body) = swap(port, &trap, "config=when%3Ddata");
    assert_eq!(status, 200, "{body}");
    gate.open();
    let (exit, stderr) = running.finish(LIMIT);
    assert!(exit.success(), "{stderr}");
    assert!(stderr.contains("rolled back"), "{stderr}");
    let lines = file_sink_lines(out.path());
    assert_eq!(lines.len(), 102, "{stderr}");
    assert_eq!(
        lines[100], "trap",
        "the batch was re-run on the previous filter"
    );
    assert_eq!(lines[101], "after");
}

/// What [`trap_after_two_swaps`] saw.
struct AfterTrap {
    /// The sink's lines, in order.
    lines: Vec<String>,
    /// Dead letters.
    dead: Vec<Value>,
    /// `filter_version` on `/pipelines/default` once the trap was handled.
    version_after_trap: Value,
    stderr: String,
}

/// `count` events from `first` on, in one chunk (one batch).
fn events_from(first: u64, count: u64) -> Step {
    let text: String = (first..first + count)
        .map(|i| format!("id: {i}\ndata: {}\n\n", wiki_event(i)))
        .collect();
    Step::Bytes(text.into_bytes())
}

/// Runs `passthrough` (version 1) with `--rollback-batches 1` and `extra` flags, swaps in
/// `wikimedia` (version 2, which passes its one-batch probation), then the trapping filter
/// (version 3), and sends a batch holding `trap` (event 30) and event 31: on version 3's
/// probation, or after it (`past_probation`: one good batch first). Reads `/pipelines` once
/// the counter `handled` (`filter_rollbacks` or `dead_letters`) shows the trap was dealt
/// with; then events 40..49.
fn trap_after_two_swaps(extra: &[&str], past_probation: bool, handled: &str) -> AfterTrap {
    let gates: Vec<Gate> = (0..4).map(|_| Gate::default()).collect();
    let mut steps = vec![events_from(0, 10), Step::Wait(gates[0].clone())];
    steps.extend([events_from(10, 10), Step::Wait(gates[1].clone())]);
    if past_probation {
        steps.extend([events_from(20, 10), Step::Wait(gates[2].clone())]);
    }
    steps.push(Step::Bytes(
        format!("id: 30\ndata: trap\n\nid: 31\ndata: {}\n\n", wiki_event(31)).into_bytes(),
    ));
    steps.extend([Step::Wait(gates[3].clone()), events_from(40, 10)]);
    let server = SseServer::always(Response::stream(steps));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let dead = tempfile::tempdir().unwrap();
    let dead_arg = format!("file:{}", dead.path().display());
    let mut flags = vec!["--rollback-batches", "1", "--dead-letter", &dead_arg];
    flags.extend_from_slice(extra);
    let running = start_run_with_admin(&server, state.path(), out.path(), &flags);
    let port = running.port;
    running.wait_for_metric(WRITTEN, 10.0, LIMIT);
    let (status, body) = swap(port, &builtin_filter("wikimedia"), "");
    assert_eq!(status, 200, "{body}");
    gates[0].open();
    running.wait_for_metric(WRITTEN, 20.0, LIMIT);
    let trap =
        std::fs::read(sse_ingest::wasm::components::testing_filter_path("trap").unwrap()).unwrap();
    let (status, body) = swap(port, &trap, "config=when%3Ddata");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"version\":3"), "{body}");
    gates[1].open();
    if past_probation {
        // Written means handled: version 3's one batch of probation is over.
        running.wait_for_metric(WRITTEN, 30.0, LIMIT);
        gates[2].open();
    }
    running.wait_for_metric(
        &format!("sse_ingest_{handled}_total{{pipeline=\"default\"}}"),
        1.0,
        LIMIT,
    );
    let (status, body) = running.get("/pipelines/default").unwrap();
    assert_eq!(status, 200, "{body}");
    let version_after_trap =
        serde_json::from_str::<Value>(&body).unwrap()["filter_version"].clone();
    gates[3].open();
    let (exit, stderr) = running.finish(LIMIT);
    assert!(exit.success(), "{stderr}");
    AfterTrap {
        lines: file_sink_lines(out.path()),
        dead: dead_letters(dead.path()),
        version_after_trap,
        stderr,
    }
}

/// Whether a sink line is `wikimedia`'s projection (version 2) rather than the event as is.
fn projected(line: &str) -> bool {
    line.contains("\"delta\"")
}

#[test]
fn under_the_rollback_policy_a_trap_on_probation_rolls_back_to_the_previous_version() {
    let seen = trap_after_two_swaps(
        &["--on-filter-error", "rollback"],
        false,
        "filter_rollbacks",
    );
    let stderr = &seen.stderr;
    assert!(stderr.contains("rolled back"), "{stderr}");
    assert_eq!(seen.version_after_trap, 2, "{stderr}");
    assert!(seen.dead.is_empty(), "{:?}", seen.dead);
    // 10 on passthrough, 10 on wikimedia, the trap batch re-run on wikimedia (which drops
    // the non-JSON `trap`), then 10 more on wikimedia.
    let lines = &seen.lines;
    assert_eq!(lines.len(), 31, "{stderr}");
    assert!(lines[..10].iter().all(|l| !projected(l)));
    assert!(lines[10..].iter().all(|l| projected(l)), "{lines:?}");
    assert!(lines[20].contains("\"id\":31"), "{}", lines[20]);
}

#[test]
fn under_the_rollback_policy_a_trap_after_probation_still_rolls_back_to_the_previous_version() {
    let seen = trap_after_two_swaps(&["--on-filter-error", "rollback"], true, "filter_rollbacks");
    let stderr = &seen.stderr;
    assert!(
        stderr.contains("filter probation ended") && stderr.contains("kept_for_rollback=true"),
        "{stderr}"
    );
    assert!(stderr.contains("rolled back"), "{stderr}");
    assert_eq!(seen.version_after_trap, 2, "{stderr}");
    assert!(seen.dead.is_empty(), "{:?}", seen.dead);
    let lines = &seen.lines;
    assert_eq!(lines.len(), 41, "{stderr}");
    assert!(lines[..10].iter().all(|l| !projected(l)));
    assert!(lines[10..20].iter().all(|l| projected(l)));
    // Version 3 passed its probation on events 20..29 (it passes events through).
    assert!(lines[20..30].iter().all(|l| !projected(l)), "{lines:?}");
    // The trap batch re-ran on version 2, which stays.
    assert!(lines[30].contains("\"id\":31") && projected(&lines[30]));
    assert!(lines[31..].iter().all(|l| projected(l)), "{lines:?}");
}

#[test]
fn under_the_dead_letter_policy_a_trap_after_probation_dead_letters_the_batch_and_keeps_the_version()
 {
    let seen = trap_after_two_swaps(&[], true, "dead_letters");
    let stderr = &seen.stderr;
    assert!(!stderr.contains("rolled back"), "{stderr}");
    assert_eq!(seen.version_after_trap, 3, "{stderr}");
    let dead: Vec<&str> = seen
        .dead
        .iter()
        .map(|d| d["event"]["data"].as_str().unwrap())
        .collect();
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(dead[0], "trap");
    let lines = &seen.lines;
    assert_eq!(lines.len(), 40, "{stderr}");
    assert!(lines[30..].iter().all(|l| !projected(l)), "{lines:?}");
}

#[test]
fn watch_swaps_the_filter_when_its_file_is_replaced() {
    // 50 events, then nothing until the swap has happened, then 50 more.
    let gate = Gate::default();
    let mut steps = numbered_stream(50, 10, Duration::ZERO);
    steps.push(Step::Wait(gate.clone()));
    steps.extend(
        numbered_stream(50, 10, Duration::ZERO)
            .into_iter()
            .map(|step| match step {
                Step::Bytes(bytes) => Step::Bytes(
                    String::from_utf8(bytes)
                        .unwrap()
                        .replace("id: ", "id: second-")
                        .into_bytes(),
                ),
                other => other,
            }),
    );
    let server = SseServer::always(Response::stream(steps));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let filters = tempfile::tempdir().unwrap();
    let filter = filters.path().join("filter.wasm");
    std::fs::write(&filter, builtin_filter("passthrough")).unwrap();
    let filter_arg = filter.display().to_string();
    let running = start_run_with_admin(
        &server,
        state.path(),
        out.path(),
        &["--filter", &filter_arg, "--watch"],
    );
    running.wait_for_log("watching the filter file", LIMIT);
    running.wait_for_metric(WRITTEN, 50.0, LIMIT);
    // Write-then-rename, as a build tool would.
    let staged = filters.path().join("filter.wasm.tmp");
    std::fs::write(&staged, builtin_filter("wikimedia")).unwrap();
    std::fs::rename(&staged, &filter).unwrap();
    running.wait_for_log("watched filter swapped in", LIMIT);
    gate.open();
    let (status, stderr) = running.finish(LIMIT);
    assert!(status.success(), "{stderr}");
    let lines = file_sink_lines(out.path());
    assert_eq!(lines.len(), 100);
    assert!(
        lines[..50].iter().all(|l| !l.contains("delta")),
        "before the swap: passthrough"
    );
    assert!(
        lines[50..].iter().all(|l| l.contains("delta")),
        "after the swap: wikimedia"
    );
}

#[test]
fn test_filter_prints_records_and_checks_expectations() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("events.sse");
    std::fs::write(&input, "data: {\"wiki\":\"enwiki\",\"n\":1}\n\ndata: {\"wiki\":\"dewiki\",\"n\":2}\n\ndata: not json\n\n").unwrap();
    let printed = run_with_limit(
        sse_ingest()
            .args([
                "test-filter",
                "json-match",
                "--filter-config",
                "where=/wiki=enwiki",
                "--filter-config",
                "key=/wiki",
                "--input",
            ])
            .arg(&input),
        LIMIT,
    );
    assert!(printed.status.success(), "{}", stderr_of(&printed));
    let stdout = String::from_utf8_lossy(&printed.stdout).into_owned();
    assert_eq!(
        stdout,
        "{\"data\":\"{\\\"wiki\\\":\\\"enwiki\\\",\\\"n\\\":1}\",\"partition_key\":\"enwiki\"}\n"
    );

    let expect = dir.path().join("expected.jsonl");
    std::fs::write(&expect, &stdout).unwrap();
    let checked = run_with_limit(
        sse_ingest()
            .args([
                "test-filter",
                "json-match",
                "--filter-config",
                "where=/wiki=enwiki",
                "--filter-config",
                "key=/wiki",
                "--input",
            ])
            .arg(&input)
            .arg("--expect")
            .arg(&expect),
        LIMIT,
    );
    assert!(checked.status.success(), "{}", stderr_of(&checked));

    std::fs::write(&expect, "{\"data\":\"something else\"}\n").unwrap();
    let mismatch = run_with_limit(
        sse_ingest()
            .args(["test-filter", "json-match", "--input"])
            .arg(&input)
            .arg("--expect")
            .arg(&expect),
        LIMIT,
    );
    assert_exit_saying(&mismatch, 1, "record 1: expected");
}

#[test]
fn filters_export_writes_every_builtin_as_a_loadable_component() {
    let dir = tempfile::tempdir().unwrap();
    let output = run_with_limit(
        sse_ingest().args(["filters", "export"]).arg(dir.path()),
        LIMIT,
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    for name in ["passthrough", "types", "json-match", "wikimedia"] {
        let wasm = std::fs::read(dir.path().join(format!("{name}.wasm"))).unwrap();
        assert_eq!(wasm, builtin_filter(name));
        // Loadable: it compiles, instantiates, accepts an empty configuration and a batch.
        let config: &[(&str, &str)] = if name == "types" {
            &[("types", "message")]
        } else {
            &[]
        };
        let harness = sse_ingest::wasm::filter_harness::FilterHarness::new(&wasm, config)
            .unwrap_or_else(|e| panic!("{name} does not load: {e}"));
        let event = sse_ingest::wasm::filter_harness::event("message", "{\"wiki\":\"x\"}");
        harness
            .run(vec![event])
            .unwrap_or_else(|e| panic!("{name} fails on a batch: {e}"));
    }
}

#[test]
fn the_rust_harness_runs_a_filter_component_in_cargo_test() {
    use sse_ingest::wasm::filter_harness::{FilterHarness, event};
    let harness = FilterHarness::new(&builtin_filter("wikimedia"), &[]).unwrap();
    let records = harness
        .run(vec![
            event("message", &wiki_event(7)),
            event("message", "not json"),
        ])
        .unwrap()
        .records;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].partition_key.as_deref(), Some("enwiki"));
    let projected: Value = serde_json::from_slice(&records[0].data).unwrap();
    assert_eq!(projected["delta"], 7);
}

#[test]
fn records_a_filter_pushed_before_failing_never_reach_the_next_batch() {
    use sse_ingest::wasm::filter::FilterError;
    use sse_ingest::wasm::filter_harness::{FilterHarness, event};
    let trap =
        std::fs::read(sse_ingest::wasm::components::testing_filter_path("trap").unwrap()).unwrap();
    let harness = FilterHarness::new(&trap, &[("when", "error")]).unwrap();
    let outcomes = harness.run_batches(vec![
        vec![
            event("message", "pushed, then failed"),
            event("message", "fail"),
        ],
        vec![event("message", "next")],
    ]);
    assert!(
        matches!(&outcomes[0], Err(FilterError::Batch(message)) if message.contains("failing after pushing")),
        "{:?}",
        outcomes[0]
    );
    let next = outcomes[1].as_ref().unwrap();
    let data: Vec<&[u8]> = next.records.iter().map(|r| &r.data[..]).collect();
    assert_eq!(
        data,
        vec![&b"next"[..]],
        "the failed batch's records leaked"
    );
}

/// Runs json-match with `stream=side` into `sink` and returns (stdout, dead letters).
fn run_routing_to_a_stream(sink: &str, dead: &std::path::Path) -> (String, Vec<Value>) {
    let server = SseServer::always(Response::text("data: {\"n\":1}\n\ndata: {\"n\":2}\n\n"));
    let state = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--once", "--sink", sink, "--filter", "json-match"]);
    command.args(["--filter-config", "stream=side"]);
    command
        .arg("--dead-letter")
        .arg(format!("file:{}", dead.display()));
    let output = run_with_limit(&mut command, LIMIT);
    assert!(output.status.success(), "{}", stderr_of(&output));
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        dead_letters(dead),
    )
}

#[test]
fn file_and_stdout_sinks_dead_letter_records_a_filter_sends_to_another_stream() {
    let out = tempfile::tempdir().unwrap();
    for sink in [file_sink(out.path()), "stdout".to_string()] {
        let dead = tempfile::tempdir().unwrap();
        let (stdout, letters) = run_routing_to_a_stream(&sink, dead.path());
        assert_eq!(letters.len(), 2, "{sink}: {letters:?}");
        for letter in &letters {
            assert_eq!(letter["stream"], "side");
            let reason = letter["reason"].as_str().unwrap();
            assert!(reason.contains("has no streams"), "{reason}");
        }
        assert!(
            !stdout.contains("\"n\""),
            "{sink} wrote a refused record: {stdout}"
        );
    }
    assert!(file_sink_lines(out.path()).is_empty());
}

#[test]
fn allow_stream_needs_a_kinesis_sink() {
    let state = tempfile::tempdir().unwrap();
    let mut command = run_command("http://127.0.0.1:9/s", state.path());
    command.args(["--once", "--sink", "stdout", "--allow-stream", "side"]);
    let output = run_with_limit(&mut command, LIMIT);
    assert_exit_saying(&output, 2, "--allow-stream: needs --sink kinesis:STREAM");
}

#[test]
fn a_stream_recorded_by_the_file_sink_replays_through_test_filter_in_both_formats() {
    let body = "event: edit\nid: 1\ndata: {\"n\":1}\n\nid: 2\ndata: plain text\n\n";
    let server = SseServer::always(Response::text(body));
    for format in ["raw", "envelope"] {
        let state = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let mut record = run_command(&server.url("/s"), state.path());
        record.args([
            "--once",
            "--format",
            format,
            "--sink",
            &file_sink(out.path()),
        ]);
        let recorded = run_with_limit(&mut record, LIMIT);
        assert!(recorded.status.success(), "{}", stderr_of(&recorded));
        let replay_input = out.path().join("recorded.ndjson");
        std::fs::write(&replay_input, file_sink_lines(out.path()).join("\n") + "\n").unwrap();
        let replayed = run_with_limit(
            sse_ingest()
                .args(["test-filter", "passthrough", "--input"])
                .arg(&replay_input),
            LIMIT,
        );
        assert!(
            replayed.status.success(),
            "{format}: {}",
            stderr_of(&replayed)
        );
        let data: Vec<String> = String::from_utf8_lossy(&replayed.stdout)
            .lines()
            .map(|line| {
                serde_json::from_str::<Value>(line).unwrap()["data"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(data, vec!["{\"n\":1}", "plain text"], "{format}");
    }
}

/// The built-ins as committed from commit `ae81cbf` (`sse-ingest:pipeline@0.1.0`, before the
/// 0.2 contract): each must still load through the host's adapter and write exactly the
/// records today's built-in writes, in both formats, with its own keys.
#[test]
fn built_ins_of_the_0_1_contract_write_exactly_the_records_of_today_s() {
    use sse_ingest::wasm::filter_harness::{FilterHarness, Format};
    use sse_ingest::wasm::source::Event;
    let mut events: Vec<Event> = support::wikimedia_events()
        .into_iter()
        .enumerate()
        .map(|(n, data)| Event {
            event_type: if n % 3 == 0 { "edit" } else { "message" }.to_string(),
            data,
            id: support::wikimedia_id(n),
            received_at_ms: 1_690_617_099_000 + n as u64,
        })
        .collect();
    events.push(Event {
        event_type: "message".into(),
        data: "not json".into(),
        id: "x".into(),
        received_at_ms: 7,
    });
    let fixtures = support::fixtures().join("filters-0.1");
    let cases: [(&str, &[(&str, &str)]); 5] = [
        ("passthrough", &[]),
        ("types", &[("types", "edit")]),
        (
            "json-match",
            &[("where", "/bot!=true"), ("key", "/meta/domain")],
        ),
        ("json-match", &[]),
        ("wikimedia", &[]),
    ];
    for (name, config) in cases {
        let old = std::fs::read(fixtures.join(format!("{}_filter.wasm", name.replace('-', "_"))))
            .unwrap();
        for format in [Format::Raw, Format::Envelope] {
            let run = |wasm: &[u8]| {
                FilterHarness::with_format(wasm, config, format)
                    .unwrap_or_else(|e| panic!("{name} does not load: {e}"))
                    .run(events.clone())
                    .unwrap_or_else(|e| panic!("{name} fails: {e}"))
                    .records
            };
            let before = run(&old);
            let now = run(&builtin_filter(name));
            assert!(!now.is_empty(), "{name} {format:?} wrote nothing");
            assert_eq!(before, now, "{name} {config:?} {format:?}");
        }
    }
}
