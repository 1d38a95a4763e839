//! The whole path through the real binary: an SSE server on 127.0.0.1 →
//! source component → filter component → sink.

use crate::support;

use std::time::Duration;

use support::sse_server::{Response, SseServer, Step};
use support::{
    file_sink, file_sink_lines, run_command, run_with_limit, stderr_of, wait_with_limit,
    wikimedia_events, wikimedia_frame, wikimedia_id,
};

const LIMIT: Duration = Duration::from_secs(60);

/// The Wikimedia sample in the live stream's framing, split into uneven chunks.
fn wikimedia_body() -> Vec<Step> {
    let stream: String = wikimedia_events()
        .iter()
        .enumerate()
        .map(|(n, data)| wikimedia_frame(n, data))
        .collect();
    stream
        .as_bytes()
        .chunks(7_919)
        .map(|chunk| Step::Bytes(chunk.to_vec()))
        .collect()
}

#[test]
fn wikimedia_sample_reaches_the_file_sink_exactly_and_in_order() {
    let server = SseServer::always(Response::stream(wikimedia_body()));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/v2/stream/recentchange"), state.path());
    command
        .arg("--once")
        .args(["--sink", &file_sink(out.path())]);
    let output = run_with_limit(&mut command, LIMIT);
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        stderr_of(&output)
    );
    assert_eq!(file_sink_lines(out.path()), wikimedia_events());
    let request = &server.requests()[0];
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    assert_eq!(request.header("cache-control"), Some("no-cache"));
    assert_eq!(request.header("last-event-id"), None);
}

#[test]
fn wikimedia_sample_reaches_stdout_as_envelopes() {
    let server = SseServer::always(Response::stream(wikimedia_body()));
    let state = tempfile::tempdir().unwrap();
    let url = server.url("/v2/stream/recentchange");
    let mut command = run_command(&url, state.path());
    command.args(["--once", "--sink", "stdout", "--format", "envelope"]);
    let output = run_with_limit(&mut command, LIMIT);
    assert!(
        output.status.success(),
        "exit {:?}: {}",
        output.status,
        stderr_of(&output)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let envelopes: Vec<serde_json::Value> = stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let events = wikimedia_events();
    assert_eq!(envelopes.len(), events.len());
    for (n, (envelope, data)) in envelopes.iter().zip(&events).enumerate() {
        assert_eq!(envelope["event"], "message");
        assert_eq!(envelope["id"], wikimedia_id(n));
        assert_eq!(envelope["data"], data.as_str());
        assert_eq!(envelope["source"], url.as_str());
        let received_at = envelope["received_at"].as_str().unwrap();
        assert!(
            received_at.ends_with('Z') && received_at.len() == 24,
            "{received_at}"
        );
    }
}

#[test]
fn user_headers_are_sent_and_types_filter_drops_other_event_types() {
    let body = "event: edit\ndata: 1\n\nevent: log\ndata: 2\n\ndata: 3\n\nevent: edit\ndata: 4\n\n";
    let server = SseServer::always(Response::text(body));
    let state = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--once", "--sink", "stdout"]);
    command.args([
        "--types",
        "edit,message",
        "--header",
        "User-Agent: sse-ingest-test/1",
    ]);
    let output = run_with_limit(&mut command, LIMIT);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "1\n3\n4\n");
    assert_eq!(
        server.requests()[0].header("user-agent"),
        Some("sse-ingest-test/1")
    );
}

#[test]
fn a_restart_resumes_with_the_checkpointed_last_event_id() {
    let server = SseServer::always(Response::text("id: 7\ndata: a\n\nid: 8\ndata: b\n\n"));
    let state = tempfile::tempdir().unwrap();
    for _ in 0..2 {
        let mut command = run_command(&server.url("/s"), state.path());
        command.args(["--once", "--sink", "stdout"]);
        let output = run_with_limit(&mut command, LIMIT);
        assert!(output.status.success(), "{}", stderr_of(&output));
    }
    let requests = server.requests();
    assert_eq!(requests[0].header("last-event-id"), None);
    assert_eq!(requests[1].header("last-event-id"), Some("8"));
}

#[test]
fn the_discard_sink_keeps_nothing_but_acknowledges_every_record_and_checkpoints() {
    let server = SseServer::always(Response::text("id: 7\ndata: a\n\nid: 8\ndata: b\n\n"));
    let state = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--once", "--sink", "discard"]);
    let output = run_with_limit(&mut command, LIMIT);
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(output.stdout.is_empty());
    assert_eq!(support::summary_field(&stderr, "records_written"), 2);
    let checkpoint =
        std::fs::read_to_string(state.path().join("pipelines/default/checkpoint.json")).unwrap();
    assert!(
        checkpoint.contains("\"last_event_id\":\"8\""),
        "{checkpoint}"
    );
}

#[test]
fn a_stdout_reader_that_goes_away_ends_the_run_promptly_and_quietly_with_141() {
    use std::io::BufRead as _;
    // Ten seconds of events, a batch every 5 ms.
    let steps = (0..2_000u64)
        .flat_map(|batch| {
            let text: String = (batch * 10..batch * 10 + 10)
                .map(|n| format!("id: {n}\ndata: {{\"n\":{n}}}\n\n"))
                .collect();
            [
                Step::Bytes(text.into_bytes()),
                Step::Pause(Duration::from_millis(5)),
            ]
        })
        .collect();
    let server = SseServer::always(Response::stream(steps));
    let state = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--sink", "stdout"]);
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut reader = std::io::BufReader::new(stdout);
    for _ in 0..5 {
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("{\"n\":"), "{line:?}");
    }
    // `head` is done: the reading end closes.
    drop(reader);
    let closed = std::time::Instant::now();
    let output = wait_with_limit(child, LIMIT);
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(
        closed.elapsed() < Duration::from_secs(5),
        "took {:?} to notice",
        closed.elapsed()
    );
    assert!(
        !stderr.contains("sse-ingest:"),
        "an error message: {stderr}"
    );
    assert!(!stderr.contains("ERROR"), "an error line: {stderr}");
    let checkpoint =
        std::fs::read_to_string(state.path().join("pipelines/default/checkpoint.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&checkpoint).unwrap();
    let id: u64 = value["last_event_id"].as_str().unwrap().parse().unwrap();
    assert!(id >= 4, "the records read are not covered: {checkpoint}");
}

/// The rows of the README's metrics table (the metric names, in order).
fn documented_metrics() -> Vec<String> {
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    let table = readme
        .split("## Metrics")
        .nth(1)
        .expect("a Metrics section in the README");
    table
        .lines()
        .filter_map(|line| line.strip_prefix("| `sse_ingest_"))
        .map(|rest| format!("sse_ingest_{}", rest.split('`').next().unwrap()))
        .collect()
}

#[test]
fn every_metric_in_the_readme_table_is_on_metrics_in_one_parsable_document() {
    use std::io::{Read as _, Write as _};
    // 50 events and a clean end; the reconnect replays the last 5, then a minute of comments.
    let server = SseServer::start(|connection, _| {
        let events = if connection == 0 { 0..50 } else { 45..50 };
        let mut body: Vec<Step> = events
            .map(|n| Step::Bytes(format!("id: {n}\ndata: {n}\n\n").into_bytes()))
            .collect();
        if connection > 0 {
            body.extend((0..600).flat_map(|_| {
                [
                    Step::Bytes(b": quiet\n".to_vec()),
                    Step::Pause(Duration::from_millis(100)),
                ]
            }));
        }
        support::sse_server::Answer::Respond(Response::stream(body))
    });
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--sink", &file_sink(out.path())]);
    command.args(support::FAST_RECONNECTS);
    let running = support::WithAdmin::start(&mut command);
    let admin = running.port;

    let scrape = || -> Option<(String, String)> {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", admin)).ok()?;
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        Some((head.to_string(), body.to_string()))
    };
    let deadline = std::time::Instant::now() + LIMIT;
    let (head, body) = loop {
        if let Some((head, body)) = scrape()
            && body.contains(
                "sse_ingest_duplicates_dropped_total{pipeline=\"default\",cause=\"reconnect\"} 5",
            )
            && body.contains("sse_ingest_records_written_total{pipeline=\"default\"} 50")
        {
            break (head, body);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "50 events never showed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    running.kill();

    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert_eq!(body.matches("# EOF").count(), 1, "one document: {body}");
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics parses as Prometheus text");
    let documented = documented_metrics();
    assert!(
        documented.len() >= 12,
        "the table was not found: {documented:?}"
    );
    for name in &documented {
        let base = name.trim_end_matches("_total");
        assert!(
            parsed.docs.contains_key(base) || parsed.docs.contains_key(name.as_str()),
            "{name} is documented but not on /metrics"
        );
    }
    let value = |metric: &str, label: Option<(&str, &str)>| -> f64 {
        parsed
            .samples
            .iter()
            .filter(|s| s.metric == metric && s.labels.get("pipeline") == Some("default"))
            .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    assert_eq!(value("sse_ingest_events_received_total", None), 55.0);
    assert_eq!(value("sse_ingest_records_written_total", None), 50.0);
    assert_eq!(
        value("sse_ingest_http_statuses_total", Some(("status", "200"))),
        2.0
    );
    assert_eq!(
        value(
            "sse_ingest_reconnects_total",
            Some(("cause", "end_of_stream"))
        ),
        1.0
    );
    assert_eq!(value("sse_ingest_connections_total", None), 2.0);
}

/// `sse-ingest run --once` into files, as one shell command line (for `script`).
fn once_command_line(server: &SseServer, state: &std::path::Path, extra: &str) -> String {
    format!(
        "{} run --once --url {} --sink file:{} --state-dir {} --cache-dir {} {extra}",
        env!("CARGO_BIN_EXE_sse-ingest"),
        server.url("/s"),
        state.join("out").display(),
        state.display(),
        std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("component-cache")
            .display(),
    )
}

#[test]
fn a_terminal_shows_the_live_summary_unless_quiet_and_a_pipe_never_does() {
    let server = SseServer::always(Response::stream(vec![Step::Bytes(
        b"id: 1\ndata: one\n\nid: 2\ndata: two\n\n".to_vec(),
    )]));
    let summary = "sse-ingest: 1 pipeline, ";
    // `script` (util-linux) runs the command on a pseudo-terminal and copies what it shows.
    let on_terminal = |extra: &str| {
        let state = tempfile::tempdir().unwrap();
        let output = run_with_limit(
            std::process::Command::new("script")
                .args(["-qfec", &once_command_line(&server, state.path(), extra)])
                .arg("/dev/null")
                .env_remove("RUST_LOG")
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped()),
            LIMIT,
        );
        assert!(output.status.success(), "{}", stderr_of(&output));
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let shown = on_terminal("");
    assert!(shown.contains(summary), "{shown}");
    assert!(
        shown.contains("\r\x1b[2K"),
        "the summary is redrawn in place: {shown}"
    );
    let quiet = on_terminal("--quiet");
    assert!(!quiet.contains(summary), "{quiet}");
    assert!(quiet.contains("finished"), "logs still show: {quiet}");

    let state = tempfile::tempdir().unwrap();
    let mut piped = run_command(&server.url("/s"), state.path());
    piped
        .arg("--once")
        .arg("--sink")
        .arg(file_sink(&state.path().join("out")));
    let output = run_with_limit(&mut piped, LIMIT);
    assert!(output.status.success());
    assert!(!stderr_of(&output).contains(summary));
}
