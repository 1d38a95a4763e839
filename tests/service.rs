//! Many pipelines from one config file, through the real binary: isolation, reload on
//! SIGHUP, `/ready`, `/metrics` for all of them, `check` and `import`.

use crate::kinesis_support;
use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kinesis_support::{Kinesalite, create_stream, read_stream};
use support::sse_server::{Answer, End, Gate, Response, SseServer, Step};
use support::{
    WithAdmin, assert_exit_saying, file_sink_lines, http_request, http_request_with,
    run_with_limit, sink_lines_so_far, sse_ingest, stderr_of,
};

const LIMIT: Duration = Duration::from_secs(120);

/// `count` events numbered from `first`, with ids `PREFIX-N`.
fn events(prefix: &str, first: u64, count: u64) -> Step {
    let text: String = (first..first + count)
        .map(|n| format!("id: {prefix}-{n}\ndata: {{\"{prefix}\":{n}}}\n\n"))
        .collect();
    Step::Bytes(text.into_bytes())
}

/// A server whose every connection sends the next 100 events and then stays open (quiet):
/// the first until `cut` opens, when it drops the connection; later ones until `hold` opens.
fn hundred_then_hold(prefix: &'static str, cut: &Gate, hold: &Gate) -> SseServer {
    let (cut, hold) = (cut.clone(), hold.clone());
    SseServer::start(move |index, _| {
        let first = index as u64 * 100;
        let gate = if index == 0 {
            cut.clone()
        } else {
            hold.clone()
        };
        Answer::Respond(
            Response::stream(vec![events(prefix, first, 100), Step::Wait(gate)]).ending(End::Drop),
        )
    })
}

/// The config file's text: `[admin]` on port 0 and one `[[pipeline]]` per entry.
fn config_text(state: &Path, pipelines: &[String]) -> String {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    let mut text = format!(
        "state_dir = {:?}\ncache_dir = {:?}\n\n[admin]\naddress = \"127.0.0.1:0\"\n\n[defaults]\nreconnect_initial_ms = 10\nreconnect_min_ms = 10\n",
        state.display().to_string(),
        cache.display().to_string(),
    );
    for pipeline in pipelines {
        text.push_str("\n[[pipeline]]\n");
        text.push_str(pipeline);
    }
    text
}

fn file_pipeline(name: &str, server: &SseServer, out: &Path) -> String {
    format!(
        "name = \"{name}\"\nurl = \"{}\"\nsink = \"file:{}\"\n",
        server.url("/stream"),
        out.display()
    )
}

/// `sse-ingest run --config FILE` with kinesalite's credentials.
fn run_config(file: &Path) -> Command {
    let mut command = sse_ingest();
    command.arg("run").arg("--config").arg(file);
    command
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env_remove("AWS_PROFILE");
    command
}

/// The pipeline's written-records series.
fn written(name: &str) -> String {
    format!("sse_ingest_records_written_total{{pipeline=\"{name}\"}}")
}

fn signal(running: &WithAdmin, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(running.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits (at most `LIMIT`) until `what` holds.
fn wait_until(what: &str, done: impl FnMut() -> bool) {
    support::wait_until(what, LIMIT, done, String::new);
}

fn pipeline_state(running: &WithAdmin, name: &str) -> serde_json::Value {
    let (status, body) = running.get(&format!("/pipelines/{name}")).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pipelines_run_apart_and_a_reload_touches_only_what_changed() {
    let kinesalite = Kinesalite::start();
    let client = kinesalite.client();
    create_stream(&client, "wiki", 1).await;
    let endpoint = kinesalite.endpoint();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("out");
    let file = dir.path().join("sse-ingest.toml");

    // `hold` keeps every connection open until the end; `cut_b` drops b's first one.
    let (hold, cut_b) = (Gate::default(), Gate::default());
    let a = hundred_then_hold("a", &hold, &hold);
    let b = hundred_then_hold("b", &cut_b, &hold);
    let c = hundred_then_hold("c", &hold, &hold);
    let d = hundred_then_hold("d", &hold, &hold);
    let kinesis_a = format!(
        "name = \"a\"\nurl = \"{}\"\nsink = \"kinesis:wiki\"\nendpoint_url = \"{endpoint}\"\nregion = \"us-east-1\"\nlinger_ms = 10\n",
        a.url("/stream")
    );
    let first = config_text(
        &state,
        &[
            kinesis_a.clone(),
            file_pipeline("b", &b, &out),
            file_pipeline("c", &c, &out),
        ],
    );
    // A rate line per pipeline every 100 ms.
    let first = first.replace("[admin]", "report_interval_ms = 100\n\n[admin]");
    std::fs::write(&file, &first).unwrap();

    let command = run_config(&file);
    let running = tokio::task::spawn_blocking(move || {
        let mut command = command;
        let running = WithAdmin::spawn(&mut command);
        for name in ["a", "b", "c"] {
            running.wait_for_metric(&written(name), 100.0, LIMIT);
        }
        running
    })
    .await
    .unwrap();

    // Cutting b's connection reconnects b alone.
    cut_b.open();
    let running = tokio::task::spawn_blocking(move || {
        running.wait_for_metric(&written("b"), 200.0, LIMIT);
        running
    })
    .await
    .unwrap();
    assert_eq!(b.connections(), 2);
    assert_eq!(
        (a.connections(), c.connections()),
        (1, 1),
        "only b reconnects"
    );
    assert_eq!(
        b.requests()[1].header("last-event-id"),
        Some("b-99"),
        "b resumes where it was"
    );

    // What /metrics says equals what the sinks hold, and it is one valid document.
    let (_, metrics) = http_request(running.port, "GET", "/metrics", b"").unwrap();
    let scrape = prometheus_parse::Scrape::parse(metrics.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics parses as Prometheus text");
    let value = |name: &str, pipeline: &str| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && s.labels.get("pipeline") == Some(pipeline))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no {name} for {pipeline}: {metrics}"))
    };
    let lines_of = |name: &str| sink_lines_so_far(&out.join(name)) as f64;
    assert_eq!(
        value("sse_ingest_records_written_total", "b"),
        lines_of("b")
    );
    assert_eq!(
        value("sse_ingest_records_written_total", "c"),
        lines_of("c")
    );
    assert_eq!(lines_of("b"), 200.0);
    let in_kinesis = read_stream(&client, "wiki").await.len() as f64;
    assert_eq!(value("sse_ingest_records_written_total", "a"), in_kinesis);
    assert_eq!(in_kinesis, 100.0);
    for pipeline in ["a", "b", "c"] {
        assert_eq!(
            value("sse_ingest_connected", pipeline),
            1.0,
            "{pipeline}: {metrics}"
        );
    }

    // Removing c and SIGHUP: c stops cleanly, a and b keep their connections.
    let second = config_text(&state, &[kinesis_a.clone(), file_pipeline("b", &b, &out)]);
    std::fs::write(&file, &second).unwrap();
    signal(&running, "HUP");
    let running = tokio::task::spawn_blocking(move || {
        wait_until("c stopping", || {
            pipeline_state(&running, "c")["state"] == "stopped"
        });
        running
    })
    .await
    .unwrap();
    assert!(running.stderr().contains("removed from the configuration"));
    assert_eq!(lines_of("c"), 100.0, "c wrote what it received");

    // Adding d starts it; a and b are not touched.
    let third = config_text(
        &state,
        &[
            kinesis_a.clone(),
            file_pipeline("b", &b, &out),
            file_pipeline("d", &d, &out),
        ],
    );
    std::fs::write(&file, &third).unwrap();
    signal(&running, "HUP");
    let running = tokio::task::spawn_blocking(move || {
        running.wait_for_metric(&written("d"), 100.0, LIMIT);
        running
    })
    .await
    .unwrap();

    // A broken file changes nothing.
    std::fs::write(&file, "[[pipeline]]\nname = \"a\"\nurl = 5\n").unwrap();
    signal(&running, "HUP");
    let running = tokio::task::spawn_blocking(move || {
        running.wait_for_log("configuration refused", LIMIT);
        running
    })
    .await
    .unwrap();
    for name in ["a", "b", "d"] {
        assert_eq!(pipeline_state(&running, name)["state"], "running", "{name}");
    }
    assert_eq!(
        (
            a.connections(),
            b.connections(),
            c.connections(),
            d.connections()
        ),
        (1, 2, 1, 1),
        "no reload reconnected a pipeline it did not change"
    );

    // The rate line shows b's events.
    let running = tokio::task::spawn_blocking(move || {
        wait_until("a rate line with b's events", || {
            rate_lines(&running.stderr(), "b")
                .iter()
                .any(|line| field(line, "events") > 0 && line.contains("events_per_second="))
        });
        running
    })
    .await
    .unwrap();

    // SIGTERM ends them all cleanly.
    signal(&running, "TERM");
    let (status, stderr) = tokio::task::spawn_blocking(move || running.finish(LIMIT))
        .await
        .unwrap();
    assert!(status.success(), "{stderr}");
    assert_eq!(lines_of("d"), 100.0);
    // The rate lines count events per interval: together never more than b received.
    let b_events: u64 = rate_lines(&stderr, "b")
        .iter()
        .map(|line| field(line, "events"))
        .sum();
    assert!((1..=200).contains(&b_events), "{b_events}: {stderr}");
    hold.open();
}

/// The periodic rate lines of `pipeline`.
fn rate_lines(stderr: &str, pipeline: &str) -> Vec<String> {
    let name = format!("pipeline={pipeline} ");
    stderr
        .lines()
        .filter(|l| l.contains(" rate ") && l.contains(&name))
        .map(str::to_string)
        .collect()
}

/// The number in `key=N` of a log line.
fn field(line: &str, key: &str) -> u64 {
    let prefix = format!("{key}=");
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(&prefix))
        .and_then(|value| value.trim_matches('"').parse().ok())
        .unwrap_or(0)
}

#[test]
fn ready_is_503_while_a_server_refuses_and_200_once_it_accepts() {
    let accepting = Arc::new(AtomicBool::new(false));
    let server = {
        let accepting = Arc::clone(&accepting);
        SseServer::start(move |_, _| {
            if accepting.load(Ordering::SeqCst) {
                Answer::Respond(Response::stream(vec![
                    events("r", 0, 1),
                    Step::Pause(Duration::from_secs(600)),
                ]))
            } else {
                Answer::Respond(Response::plain(503, "text/plain", "busy"))
            }
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sse-ingest.toml");
    let out = dir.path().join("out");
    std::fs::write(
        &file,
        config_text(
            &dir.path().join("state"),
            &[file_pipeline("r", &server, &out)],
        ),
    )
    .unwrap();
    let running = WithAdmin::spawn(&mut run_config(&file));
    // The log line of the 503 answer itself: a connection counted by the server may not
    // have been answered yet, and could still get the 200 below.
    running.wait_for_log("reconnecting", Duration::from_secs(60));
    let (status, body) = http_request(running.port, "GET", "/ready", b"").unwrap();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("\"r\""), "names the pipeline: {body}");
    accepting.store(true, Ordering::SeqCst);
    wait_until("ready", || {
        http_request(running.port, "GET", "/ready", b"").is_ok_and(|(status, _)| status == 200)
    });
    let (status, _) = http_request(running.port, "GET", "/health", b"").unwrap();
    assert_eq!(status, 200);
    let stderr = running.kill();
    assert!(stderr.contains("reconnecting"), "{stderr}");
}

#[test]
fn check_names_every_mistake_with_its_line_and_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.toml");
    std::fs::write(
        &file,
        "[[pipeline]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\nfiltr = \"json-match\"\n\n\
         [[pipeline]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/\"\nfilter = \"json-match\"\n\
         filter_config = [\"nonsense=1\"]\nbatch_max_events = 0\n\n\
         [[pipeline]]\nname = \"a\"\nurl = \"http://127.0.0.1:1/\"\n",
    )
    .unwrap();
    let output = run_with_limit(sse_ingest().arg("check").arg(&file), LIMIT);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        at_line(&stdout, &file, 4, "did you mean `filter`"),
        "{stdout}"
    );
    assert!(at_line(&stdout, &file, 11, "batch-max-events"), "{stdout}");
    assert!(
        at_line(&stdout, &file, 14, "a second pipeline named `a`"),
        "{stdout}"
    );
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    assert!(stderr_of(&output).contains("3 problems"));

    // Once the file reads well, the filters are loaded and given their configuration.
    std::fs::write(
        &file,
        "[[pipeline]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/\"\nfilter = \"json-match\"\n\
         filter_config = [\"nonsense=1\"]\n",
    )
    .unwrap();
    let output = run_with_limit(sse_ingest().arg("check").arg(&file), LIMIT);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(at_line(&stdout, &file, 4, "pipeline `b`"), "{stdout}");

    std::fs::write(
        &file,
        "[[pipeline]]\nname = \"b\"\nurl = \"http://127.0.0.1:1/\"\nfilter = \"json-match\"\n\
         filter_config = [\"where=/wiki=enwiki\"]\n",
    )
    .unwrap();
    let output = run_with_limit(sse_ingest().arg("check").arg(&file), LIMIT);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok, 1 pipeline"));
}

fn at_line(stdout: &str, file: &Path, line: usize, needle: &str) -> bool {
    let prefix = format!("{}:{line}:", file.display());
    stdout
        .lines()
        .any(|l| l.starts_with(&prefix) && l.contains(needle))
}

#[test]
fn a_config_in_an_environment_variable_is_read_and_cannot_be_watched() {
    const VARIABLE: &str = "SSE_INGEST_TEST_CONFIG";
    let config = "[[pipeline]]\nname = \"from-env\"\nurl = \"http://127.0.0.1:1/\"\n";
    let checked = run_with_limit(
        sse_ingest()
            .args(["check", &format!("env:{VARIABLE}")])
            .env(VARIABLE, config),
        LIMIT,
    );
    assert_eq!(checked.status.code(), Some(0), "{}", stderr_of(&checked));
    assert!(
        String::from_utf8_lossy(&checked.stdout).contains("ok, 1 pipeline"),
        "{checked:?}"
    );

    let unset = run_with_limit(
        sse_ingest()
            .args(["check", &format!("env:{VARIABLE}")])
            .env_remove(VARIABLE),
        LIMIT,
    );
    assert_eq!(unset.status.code(), Some(2), "{}", stderr_of(&unset));
    let told = format!(
        "{}{}",
        String::from_utf8_lossy(&unset.stdout),
        stderr_of(&unset)
    );
    assert!(
        told.contains(&format!("environment variable {VARIABLE}")),
        "{told}"
    );

    let watched = run_with_limit(
        sse_ingest()
            .args([
                "run",
                "--config",
                &format!("env:{VARIABLE}"),
                "--watch-config",
            ])
            .env(VARIABLE, config),
        LIMIT,
    );
    assert_exit_saying(&watched, 2, "--watch-config watches a file");
}

#[test]
fn an_imported_properties_file_runs_the_same_records_as_run_properties() {
    let server = SseServer::always(Response::stream(vec![
        Step::Bytes(b"event: edit\nid: 1\ndata: {\"n\":1}\n\n".to_vec()),
        Step::Bytes(b"event: log\nid: 2\ndata: {\"n\":2}\n\n".to_vec()),
        Step::Bytes(b"event: edit\nid: 3\ndata: {\"n\":3}\n\n".to_vec()),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let properties = dir.path().join("properties.json");
    std::fs::write(
        &properties,
        format!(
            r#"[{{"PropertyGroupId": "SSESourceProperties", "PropertyMap": {{
                "url": "{}", "headers": "Accept-Language|en", "types": "edit",
                "readTimeoutMS": "30000", "reportMessagesReceivedMS": "10000"}}}}]"#,
            server.url("/stream")
        ),
    )
    .unwrap();
    let import = run_with_limit(
        sse_ingest()
            .arg("import")
            .arg("--properties")
            .arg(&properties),
        LIMIT,
    );
    assert!(import.status.success(), "{}", stderr_of(&import));
    let toml = String::from_utf8(import.stdout).unwrap();

    // The same pipeline twice, once from each, into files, --once.
    let from_properties = dir.path().join("from-properties");
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    let output = run_with_limit(
        sse_ingest()
            .args(["run", "--once", "--properties"])
            .arg(&properties)
            .arg("--sink")
            .arg(format!("file:{}", from_properties.display()))
            .arg("--state-dir")
            .arg(dir.path().join("state-1"))
            .arg("--cache-dir")
            .arg(&cache),
        LIMIT,
    );
    assert!(output.status.success(), "{}", stderr_of(&output));

    let from_toml = dir.path().join("from-toml");
    let config = format!(
        "state_dir = {:?}\ncache_dir = {:?}\n{}",
        dir.path().join("state-2").display().to_string(),
        cache.display().to_string(),
        toml.replace(
            "sink = \"file:./sse-ingest-out\"",
            &format!("sink = \"file:{}\"\nonce = true", from_toml.display())
        )
    );
    let file = dir.path().join("imported.toml");
    std::fs::write(&file, &config).unwrap();
    let output = run_with_limit(&mut run_config(&file), LIMIT);
    assert!(output.status.success(), "{config}\n{}", stderr_of(&output));

    let expected = file_sink_lines(&from_properties);
    assert_eq!(expected, vec!["{\"n\":1}", "{\"n\":3}"]);
    assert_eq!(file_sink_lines(&from_toml), expected);
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.header("accept-language") == Some("en")),
        "both send the seed's headers"
    );
}

#[test]
fn pause_holds_reading_and_resume_goes_on_over_the_same_connection_with_a_token() {
    let more = Gate::default();
    let hold = Gate::default();
    let server = {
        let (more, hold) = (more.clone(), hold.clone());
        SseServer::start(move |_, _| {
            Answer::Respond(Response::stream(vec![
                events("p", 0, 100),
                Step::Wait(more.clone()),
                events("p", 100, 100),
                Step::Wait(hold.clone()),
            ]))
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sse-ingest.toml");
    let out = dir.path().join("out");
    let text = config_text(
        &dir.path().join("state"),
        &[file_pipeline("p", &server, &out)],
    )
    .replace(
        "address = \"127.0.0.1:0\"",
        "address = \"127.0.0.1:0\"\ntoken = \"${SSE_INGEST_TEST_ADMIN_TOKEN}\"",
    );
    std::fs::write(&file, text).unwrap();
    let token = "t0ken-for-this-test";
    let bearer = format!("Authorization: Bearer {token}");
    let running = WithAdmin::spawn(run_config(&file).env("SSE_INGEST_TEST_ADMIN_TOKEN", token))
        .with_token(token);
    running.wait_for_metric(&written("p"), 100.0, LIMIT);

    let (status, body) = http_request(running.port, "POST", "/pipelines/p/pause", b"").unwrap();
    assert_eq!(status, 401, "no token, no pause: {body}");
    let wrong = "Authorization: Bearer wrong";
    let (status, _) =
        http_request_with(running.port, "POST", "/pipelines/p/pause", &[wrong], b"").unwrap();
    assert_eq!(status, 401);
    let (status, body) =
        http_request_with(running.port, "POST", "/pipelines/p/pause", &[&bearer], b"").unwrap();
    assert_eq!(status, 200, "{body}");
    let paused = pipeline_state(&running, "p");
    assert_eq!(paused["state"], "paused");
    assert_eq!(paused["last_acknowledged_event_id"], "p-99", "{paused}");
    assert_eq!(paused["records_waiting"], 0, "{paused}");
    assert!(paused["events_per_second"].is_number(), "{paused}");

    // The next events arrive while paused: the source holds them and reads no more.
    more.open();
    running.wait_for_log("paused: reading stops until resumed", LIMIT);
    assert_eq!(pipeline_state(&running, "p")["records_written"], 100);
    let (status, _) = http_request(running.port, "GET", "/ready", b"").unwrap();
    assert_eq!(status, 200, "a pipeline paused on purpose is ready");

    let (status, body) =
        http_request_with(running.port, "POST", "/pipelines/p/resume", &[&bearer], b"").unwrap();
    assert_eq!(status, 200, "{body}");
    running.wait_for_metric(&written("p"), 200.0, LIMIT);
    assert_eq!(server.connections(), 1, "resumed on the same connection");

    let status = run_with_limit(
        sse_ingest()
            .args(["status", "--admin", &format!("127.0.0.1:{}", running.port)])
            .env("SSE_INGEST_ADMIN_TOKEN", token),
        LIMIT,
    );
    assert!(status.status.success(), "{}", stderr_of(&status));
    let table = String::from_utf8_lossy(&status.stdout);
    let row = table
        .lines()
        .find(|l| l.starts_with("p "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("running") && row.contains("200"), "{table}");

    let stderr = running.kill();
    hold.open();
    assert!(
        !stderr.contains(token),
        "the token is never logged: {stderr}"
    );
}

#[test]
fn a_failing_pipeline_stops_alone_says_why_and_sets_the_exit_code() {
    let hold = Gate::default();
    let healthy = hundred_then_hold("h", &hold, &hold);
    let gone = SseServer::always(Response::plain(404, "text/plain", "no such stream"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = dir.path().join("sse-ingest.toml");
    std::fs::write(
        &file,
        config_text(
            &dir.path().join("state"),
            &[
                file_pipeline("healthy", &healthy, &out),
                file_pipeline("gone", &gone, &out),
            ],
        ),
    )
    .unwrap();
    let running = WithAdmin::spawn(&mut run_config(&file));
    wait_until("gone failing", || {
        pipeline_state(&running, "gone")["state"] == "failed"
    });
    let failed = pipeline_state(&running, "gone");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("404"),
        "{failed}"
    );
    running.wait_for_metric(&written("healthy"), 100.0, LIMIT);
    assert_eq!(pipeline_state(&running, "healthy")["state"], "running");
    let (status, body) = http_request(running.port, "GET", "/ready", b"").unwrap();
    assert_eq!(status, 503, "a failed pipeline needs an operator: {body}");
    assert!(body.contains("gone") && !body.contains("healthy"), "{body}");

    signal(&running, "TERM");
    let (status, stderr) = running.finish(LIMIT);
    hold.open();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("sse-ingest: pipeline `gone`:") && last.contains("404"),
        "the exit message names the failed pipeline: {last}"
    );
    assert_eq!(healthy.connections(), 1);
}

#[test]
fn watch_config_starts_a_pipeline_added_to_the_file() {
    let hold = Gate::default();
    let (first, second) = (
        hundred_then_hold("f", &hold, &hold),
        hundred_then_hold("s", &hold, &hold),
    );
    let dir = tempfile::tempdir().unwrap();
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let file = dir.path().join("sse-ingest.toml");
    std::fs::write(
        &file,
        config_text(&state, &[file_pipeline("first", &first, &out)]),
    )
    .unwrap();
    let running = WithAdmin::spawn(run_config(&file).arg("--watch-config"));
    running.wait_for_metric(&written("first"), 100.0, LIMIT);
    // Written elsewhere and renamed over the file, as editors and config tools do.
    let staged = dir.path().join("sse-ingest.toml.new");
    std::fs::write(
        &staged,
        config_text(
            &state,
            &[
                file_pipeline("first", &first, &out),
                file_pipeline("second", &second, &out),
            ],
        ),
    )
    .unwrap();
    std::fs::rename(&staged, &file).unwrap();
    running.wait_for_metric(&written("second"), 100.0, LIMIT);
    assert_eq!(
        first.connections(),
        1,
        "the unchanged pipeline kept its connection"
    );
    let stderr = running.kill();
    hold.open();
    assert!(stderr.contains("configuration reloaded"), "{stderr}");
}

#[test]
fn a_changed_pipeline_restarts_from_its_checkpoint_and_the_others_stay_connected() {
    let hold = Gate::default();
    let (x, y) = (
        hundred_then_hold("x", &hold, &hold),
        hundred_then_hold("y", &hold, &hold),
    );
    let dir = tempfile::tempdir().unwrap();
    let (out, state) = (dir.path().join("out"), dir.path().join("state"));
    let file = dir.path().join("sse-ingest.toml");
    let pipelines = |x_extra: &str| {
        config_text(
            &state,
            &[
                format!("{}{x_extra}", file_pipeline("x", &x, &out)),
                file_pipeline("y", &y, &out),
            ],
        )
    };
    std::fs::write(&file, pipelines("")).unwrap();
    let running = WithAdmin::spawn(&mut run_config(&file));
    running.wait_for_metric(&written("x"), 100.0, LIMIT);
    running.wait_for_metric(&written("y"), 100.0, LIMIT);

    // Another format for x: x restarts, y is not touched.
    std::fs::write(&file, pipelines("format = \"envelope\"\n")).unwrap();
    signal(&running, "HUP");
    running.wait_for_metric(&written("x"), 200.0, LIMIT);
    assert_eq!(x.connections(), 2, "x reconnected once");
    assert_eq!(
        x.requests()[1].header("last-event-id"),
        Some("x-99"),
        "x resumed from its checkpoint"
    );
    assert_eq!(y.connections(), 1, "y kept its connection");
    signal(&running, "TERM");
    let (status, stderr) = running.finish(LIMIT);
    hold.open();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("changed in the configuration: restarting"),
        "{stderr}"
    );
    let lines = file_sink_lines(&out.join("x"));
    assert_eq!(
        lines.len(),
        200,
        "no event lost or repeated across the restart"
    );
    assert!(
        lines[100].contains(r#""id":"x-100""#) && lines[100].contains(r#""event":"message""#),
        "the new run writes envelopes: {}",
        lines[100]
    );
}
