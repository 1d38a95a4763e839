//! Bad input gets a defined outcome and a clear message, never a hang.

use crate::support;

use std::time::Duration;

use support::sse_server::{Answer, End, Response, SseServer, Step};
use support::{assert_exit_saying, isolated, run_command, run_with_limit, sse_ingest, stderr_of};

const LIMIT: Duration = Duration::from_secs(60);

fn run_once(url: &str, extra: &[&str]) -> std::process::Output {
    let state = tempfile::tempdir().unwrap();
    let mut command = run_command(url, state.path());
    command.args(["--once", "--sink", "stdout"]).args(extra);
    run_with_limit(&mut command, LIMIT)
}

#[test]
fn http_404_fails_with_the_status_and_the_start_of_the_body() {
    let server = SseServer::always(Response::plain(404, "text/plain", "no such stream: /nope"));
    let output = run_once(&server.url("/nope"), &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("HTTP 404") && stderr.contains("no such stream"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty());
}

#[test]
fn http_500_with_once_fails_with_the_status() {
    let server = SseServer::always(Response::plain(500, "text/plain", "boom"));
    let output = run_once(&server.url("/s"), &[]);
    assert_exit_saying(&output, 1, "HTTP 500");
}

#[test]
fn an_html_page_with_status_200_is_refused_for_its_content_type() {
    let server = SseServer::always(Response::plain(
        200,
        "text/html",
        "<html><body>Login</body></html>",
    ));
    let output = run_once(&server.url("/s"), &[]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("content type `text/html`") && stderr.contains("Login"),
        "{stderr}"
    );
}

#[test]
fn a_server_that_closes_before_any_byte_is_a_network_error() {
    let server = SseServer::start(|_, _| Answer::CloseImmediately);
    let output = run_once(&server.url("/s"), &[]);
    assert_exit_saying(&output, 1, "network error");
}

#[test]
fn invalid_utf8_becomes_replacement_characters() {
    let body = b"data: caf\xC3\n\ndata: ok \xFF\xFE end\n\n".to_vec();
    let server = SseServer::always(Response::stream(vec![Step::Bytes(body)]));
    let output = run_once(&server.url("/s"), &[]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "caf\u{FFFD}\nok \u{FFFD}\u{FFFD} end\n"
    );
}

#[test]
fn an_over_long_line_drops_that_event_only_and_says_so() {
    let huge = "x".repeat(300 * 1024);
    let body = format!("data: before\n\ndata: {huge}\n\ndata: after\n\n");
    let steps = body
        .as_bytes()
        .chunks(16 * 1024)
        .map(|c| Step::Bytes(c.to_vec()))
        .collect();
    let server = SseServer::always(Response::stream(steps));
    let output = run_once(&server.url("/s"), &["--max-event-bytes", "65536"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "before\nafter\n");
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("oversized") || stderr.contains("larger than max-event-bytes"),
        "{stderr}"
    );
}

#[test]
fn a_stream_that_stalls_is_cut_by_the_idle_timeout() {
    let server = SseServer::always(
        Response::text("data: one\n\n").ending(End::Stall(Duration::from_secs(20))),
    );
    let started = std::time::Instant::now();
    let output = run_once(&server.url("/s"), &["--idle-timeout-ms", "500"]);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    // With --once a timed-out stream is a failure, but what arrived was written.
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "one\n");
}

#[test]
fn a_bad_flag_is_a_one_line_usage_error() {
    let output = run_with_limit(sse_ingest().args(["run", "--no-such-flag"]), LIMIT);
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("--no-such-flag"), "{stderr}");
}

#[test]
fn a_bad_url_is_a_one_line_usage_error() {
    let output = run_with_limit(sse_ingest().args(["run", "--url", "not a url"]), LIMIT);
    assert_eq!(output.status.code(), Some(2));
    let stderr = stderr_of(&output);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("invalid --url"), "{stderr}");
}

#[test]
fn an_unknown_builtin_filter_is_a_usage_error() {
    let state = tempfile::tempdir().unwrap();
    let mut command = sse_ingest();
    command.args(["run", "--filter", "nope"]);
    isolated(&mut command, state.path());
    let output = run_with_limit(&mut command, LIMIT);
    assert_exit_saying(&output, 2, "unknown filter `nope`");
}

#[test]
fn out_of_range_kinesis_limits_are_usage_errors_naming_the_flag() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--max-records-per-request", "900"],
            "--max-records-per-request is 900, must be 1 to 500",
        ),
        (
            &["--buffer-max-bytes", "1000", "--max-record-bytes", "2000"],
            "--buffer-max-bytes (1000) is smaller than the record limit",
        ),
        (&["--attempt-timeout-ms", "0"], "--attempt-timeout-ms"),
    ];
    for (flags, expected) in cases {
        let output = run_with_limit(
            sse_ingest()
                .args(["run", "--sink", "kinesis:events"])
                .args(flags),
            LIMIT,
        );
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn dead_letters_inside_the_sink_directory_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let sink = dir.path().join("out");
    let dead = sink.join("dead");
    let mut command = sse_ingest();
    command.args(["run", "--url", "http://127.0.0.1:9/s"]);
    command
        .arg("--sink")
        .arg(format!("file:{}", sink.display()));
    command
        .arg("--dead-letter")
        .arg(format!("file:{}", dead.display()));
    isolated(&mut command, dir.path());
    let output = run_with_limit(&mut command, LIMIT);
    assert_exit_saying(&output, 2, "overlap");
    let stderr = stderr_of(&output);
    assert!(stderr.contains(&dead.display().to_string()), "{stderr}");
    assert!(stderr.contains(&sink.display().to_string()), "{stderr}");
}

#[test]
fn out_of_range_sizes_and_contradictory_delays_exit_two_naming_the_flag() {
    let cases: [(&[&str], &str); 3] = [
        (
            &["--max-event-bytes", "99999999999"],
            "invalid --max-event-bytes: 99999999999 is out of range: 1024 to 67108864",
        ),
        (
            &["--batch-max-events", "1000000"],
            "invalid --batch-max-events: 1000000 is out of range: 1 to 65536",
        ),
        (
            &["--reconnect-min-ms", "5000", "--reconnect-max-ms", "1000"],
            "invalid --reconnect-min-ms: 5000 is more than --reconnect-max-ms 1000",
        ),
    ];
    for (flags, expected) in cases {
        let output = run_with_limit(sse_ingest().args(["run"]).args(flags), LIMIT);
        let stderr = stderr_of(&output);
        assert_eq!(output.status.code(), Some(2), "{flags:?}: {stderr}");
        assert!(stderr.contains(expected), "{flags:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn a_filter_memory_below_what_the_largest_batch_needs_is_refused_naming_both_figures() {
    let output = run_once(
        "http://127.0.0.1:1/s",
        &["--filter-memory-mib", "16", "--max-event-bytes", "8388608"],
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("16 MiB is below the 41 MiB that the largest batch needs"),
        "{stderr}"
    );
}

/// Event `n`: JSON over two `data:` lines for even `n`, three lines of text for odd `n`.
fn multi_line_frame(n: u64) -> String {
    if n.is_multiple_of(2) {
        format!("id: {n}\ndata: {{\"n\":{n},\ndata: \"part\":\"second of {n}\"}}\n\n")
    } else {
        format!("id: {n}\ndata: first of {n}\ndata: second of {n}\ndata: third of {n}\n\n")
    }
}

#[test]
fn a_thousand_events_of_several_data_lines_are_a_thousand_whole_lines_in_raw_format() {
    let body: String = (0..1000).map(multi_line_frame).collect();
    let server = SseServer::always(Response::text(&body));
    let output = run_once(&server.url("/s"), &["--format", "raw"]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1000, "one line a record");
    for (n, line) in (0u64..).zip(&lines) {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("line {n} is not one JSON value ({e}): {line}"));
        if n.is_multiple_of(2) {
            assert_eq!(value["n"], n, "line {n}: {line}");
            assert_eq!(value["part"], format!("second of {n}"), "line {n}: {line}");
        } else {
            assert_eq!(
                value,
                format!("first of {n}\nsecond of {n}\nthird of {n}"),
                "line {n}: every part, in order"
            );
        }
    }
}
