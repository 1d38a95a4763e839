//! Filters in three languages: the example filter of `examples/filters` in Rust, Python
//! (componentize-py) and JavaScript (ComponentizeJS), each built from source by its own
//! scripts, checked with `test-filter`, run against a local server, and swapped live one
//! after another on one connection. Also: the filter import policy still refuses a
//! component that asks for randomness.

use crate::support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::examples::{CONFIG, LANGUAGES, example_filter, expected_records, recorded_events};
use support::sse_server::{End, Gate, Response, SseServer, Step};
use support::{WithAdmin, dead_letters, file_sink, file_sink_lines, run_command};

const LIMIT: Duration = Duration::from_secs(300);

#[test]
fn every_example_passes_its_test_script_with_the_shared_expectations() {
    for lang in LANGUAGES {
        // Builds with build.sh, then `test-filter --expect` over the recorded events: the
        // helper asserts the script's success and its 21 expected records.
        let wasm = example_filter(lang);
        let size = std::fs::metadata(&wasm).unwrap().len();
        eprintln!("{lang}: {} ({size} bytes)", wasm.display());
        assert!(size > 0);
    }
}

/// The recorded events as an SSE stream with ids `0..`, then a clean end.
fn recorded_stream() -> SseServer {
    let text: String = recorded_events()
        .iter()
        .enumerate()
        .map(|(n, data)| format!("id: {n}\ndata: {data}\n\n"))
        .collect();
    SseServer::always(Response::stream(vec![Step::Bytes(text.into_bytes())]))
}

#[test]
fn every_example_runs_a_pipeline_against_a_local_server() {
    let expected = expected_records();
    for lang in LANGUAGES {
        let wasm = example_filter(lang);
        let server = recorded_stream();
        let state = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let mut command = run_command(&server.url("/recentchange"), state.path());
        command.arg("--once");
        command.args(["--sink", &file_sink(out.path())]);
        command.args([
            "--filter",
            wasm.to_str().unwrap(),
            "--filter-config",
            CONFIG,
        ]);
        let output = support::run_with_limit(&mut command, LIMIT);
        let stderr = support::stderr_of(&output);
        assert!(output.status.success(), "{lang}: {stderr}");
        assert_eq!(file_sink_lines(out.path()), expected, "{lang}: {stderr}");
        let events = recorded_events().len() as u64;
        // Exact for a 0.2 filter: every event it did not name, none guessed.
        assert_eq!(
            support::summary_field(&stderr, "events_filtered_out"),
            events - expected.len() as u64,
            "{lang}: {stderr}"
        );
        assert!(
            stderr.contains("dropped 1 event(s) of this batch whose data is not JSON"),
            "{lang} logs what it dropped: {stderr}"
        );
        assert!(dead_letters(&state.path().join("dead-letters")).is_empty());
    }
}

/// `{"type":"edit","wiki":"enwiki","bot":false,"n":N}` for `range`: events the example
/// keeps whatever its language.
fn edits(range: std::ops::Range<u64>) -> Step {
    let text: String = range
        .map(|n| {
            format!("id: {n}\ndata: {{\"type\":\"edit\",\"wiki\":\"enwiki\",\"bot\":false,\"n\":{n}}}\n\n")
        })
        .collect();
    Step::Bytes(text.into_bytes())
}

#[test]
fn one_live_pipeline_swaps_rust_python_javascript_rust_losing_and_repeating_nothing() {
    const PHASE: u64 = 500;
    let versions = ["rust", "python", "js", "rust"];
    let builds: Vec<_> = versions.iter().map(|lang| example_filter(lang)).collect();
    // One response: each phase's events, then a gate the test opens once the next
    // version is live, so every version handles a phase of its own.
    let gates: Vec<Gate> = (1..versions.len()).map(|_| Gate::default()).collect();
    let mut steps = vec![edits(0..PHASE)];
    for (phase, gate) in gates.iter().enumerate() {
        let start = (phase as u64 + 1) * PHASE;
        steps.push(Step::Wait(gate.clone()));
        steps.push(edits(start..start + PHASE));
    }
    let server = SseServer::always(Response::stream(steps).ending(End::Clean));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/recentchange"), state.path());
    command.arg("--once");
    command.args(["--sink", &file_sink(out.path())]);
    command.args(["--filter", builds[0].to_str().unwrap()]);
    command.args(["--filter-config", "wikis=enwiki"]);
    // A cold compile of a Python or JavaScript component takes seconds on a loaded
    // machine; the stream waits at a gate meanwhile, and must not be taken for dead.
    command.args(["--idle-timeout-ms", "600000"]);
    let running = WithAdmin::start(&mut command);
    let written = "sse_ingest_records_written_total{pipeline=\"default\"}";
    running.wait_for_metric(written, PHASE as f64, LIMIT);
    for (phase, gate) in gates.iter().enumerate() {
        let lang = versions[phase + 1];
        let bytes = std::fs::read(&builds[phase + 1]).unwrap();
        let query = format!("config=wikis%3Denwiki&label={lang}");
        let asked = Instant::now();
        // A cold compile of 12-18 MB on a loaded machine may take longer than the usual 30 s.
        let (status, body) = support::http_request_within(
            running.port,
            "POST",
            &format!("/pipelines/default/filter?{query}"),
            &[support::WASM],
            &bytes,
            LIMIT,
        )
        .unwrap_or_else(|e| panic!("swap to {lang}: {e}: {}", running.stderr()));
        assert_eq!(status, 200, "swap to {lang}: {body}: {}", running.stderr());
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["version"], phase as u64 + 2, "{body}");
        eprintln!(
            "swap to {lang} ({} bytes): answered in {} ms",
            bytes.len(),
            asked.elapsed().as_millis()
        );
        gate.open();
        // The last phase ends the stream, and `--once` the process with it.
        if phase + 1 < gates.len() {
            running.wait_for_metric(written, ((phase as u64 + 2) * PHASE) as f64, LIMIT);
        }
    }
    let (status, stderr) = running.finish(LIMIT);
    assert!(status.success(), "{stderr}");
    assert_eq!(
        server.connections(),
        1,
        "a swap must not reopen the connection"
    );
    let total = PHASE * versions.len() as u64;
    let numbers: Vec<u64> = file_sink_lines(out.path())
        .iter()
        .map(|line| {
            serde_json::from_str::<Value>(line).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        numbers,
        (0..total).collect::<Vec<_>>(),
        "lost, repeated or reordered"
    );
    for lang in ["python", "js"] {
        assert!(
            stderr.contains(&format!("filter={lang}")),
            "the {lang} version never went live: {stderr}"
        );
    }
}

#[test]
fn a_filter_importing_wasi_random_is_still_refused_naming_the_import() {
    let component = wat::parse_str(
        r#"(component
             (import "wasi:random/random@0.2.12" (instance
               (export "get-random-u64" (func (result u64)))))
           )"#,
    )
    .unwrap();
    let refused = sse_ingest::wasm::filter_harness::FilterHarness::new(&component, &[])
        .expect_err("a filter may not import randomness");
    let message = refused.to_string();
    assert!(
        message.contains("it imports `wasi:random/random@0.2.12`, a capability filters do not get"),
        "{message}"
    );
}

#[test]
fn filters_new_writes_a_project_in_each_language_whose_scripts_pass_out_of_the_box() {
    let projects = tempfile::tempdir().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for lang in ["rust", "python", "js"] {
        let dir = projects.path().join(lang);
        let output = support::sse_ingest()
            .args(["filters", "new", "--lang", lang])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", support::stderr_of(&output));
        if lang == "js" {
            // The project installs its pinned ComponentizeJS with `npm ci` when it has none;
            // here it borrows the example's copy of the same lock file's packages.
            std::os::unix::fs::symlink(
                support::examples::examples_dir().join("js/node_modules"),
                dir.join("node_modules"),
            )
            .unwrap();
        }
        let checked = std::process::Command::new(dir.join("test.sh"))
            .env("SSE_INGEST", env!("CARGO_BIN_EXE_sse-ingest"))
            .env(
                "COMPONENTIZE_PY",
                root.join("target/tools/componentize-py/bin/componentize-py"),
            )
            // The Rust project's own build, kept between runs of the suite.
            .env(
                "CARGO_TARGET_DIR",
                std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("new-filter-rust"),
            )
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&checked.stdout);
        assert!(
            checked.status.success() && stdout.contains("ok: 3 records as expected"),
            "{lang}: {stdout}\n{}",
            String::from_utf8_lossy(&checked.stderr)
        );
        // Nothing of this repository is needed: the project carries the contract (and the SDK).
        assert!(dir.join("wit/filter/filter.wit").is_file());
    }
    let again = support::sse_ingest()
        .args(["filters", "new", "--lang", "rust"])
        .arg(projects.path().join("rust"))
        .output()
        .unwrap();
    support::assert_exit_saying(&again, 2, "is not empty");
}
