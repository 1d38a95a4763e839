//! A secret never leaves its place, through the real binary: credentials in `--url`
//! (userinfo and a token in the query) reach the server as it needs them and appear in no
//! log line, admin answer, checkpoint or record; `--header`s stay with their origin.

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::sse_server::{Answer, Gate, Response, SseServer, Step};
use support::{WithAdmin, file_sink, run_command, run_with_limit, stderr_of};

const LIMIT: Duration = Duration::from_secs(60);

const PASSWORD: &str = "pa55w0rd";
const TOKEN: &str = "TOPSECRET";
/// base64 of `alice:pa55w0rd`: what `Authorization: Basic` carries.
const BASIC: &str = "YWxpY2U6cGE1NXcwcmQ=";

/// Every file under `dir`, read as text, with its path.
fn files_under(dir: &Path) -> Vec<(String, String)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .map(|entry| {
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            (
                entry.path().display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            )
        })
        .collect()
}

fn assert_no_secret(place: &str, text: &str) {
    for secret in [PASSWORD, TOKEN, BASIC] {
        assert!(!text.contains(secret), "`{secret}` in {place}: {text}");
    }
}

fn ten_events_then(gate: &Gate) -> Response {
    let body: String = (0..10)
        .map(|n| format!("id: {n}\ndata: {{\"n\":{n}}}\n\n"))
        .collect();
    Response::stream(vec![
        Step::Bytes(body.into_bytes()),
        Step::Wait(gate.clone()),
    ])
}

#[test]
fn credentials_in_the_url_reach_the_server_as_basic_auth_and_nothing_else_shows_them() {
    let gate = Gate::default();
    let server = SseServer::start({
        let gate = gate.clone();
        move |_, _| Answer::Respond(ten_events_then(&gate))
    });
    let address = server.address();
    let url = format!("http://alice:{PASSWORD}@{address}/s?access_token={TOKEN}&wiki=en");
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    for dir in [state.path(), out.path()] {
        assert_no_secret("a path", &dir.display().to_string());
    }
    let mut command = run_command(&url, state.path());
    command.args([
        "--once",
        "--format",
        "envelope",
        "--sink",
        &file_sink(out.path()),
    ]);
    let admin = WithAdmin::start(&mut command);
    admin.wait_for_metric(
        "sse_ingest_records_written_total{pipeline=\"default\"}",
        10.0,
        LIMIT,
    );
    let (status, pipelines) = admin.get("/pipelines").unwrap();
    assert_eq!(status, 200, "{pipelines}");
    assert!(pipelines.contains("access_token=[redacted]"), "{pipelines}");
    assert_no_secret("/pipelines", &pipelines);
    gate.open();
    let (exit, stderr) = admin.finish(LIMIT);
    assert!(exit.success(), "{stderr}");
    assert_no_secret("the log", &stderr);
    assert!(
        stderr.contains("access_token=[redacted]"),
        "the log shows the URL: {stderr}"
    );

    let request = &server.requests()[0];
    assert_eq!(
        request.header("Authorization"),
        Some(format!("Basic {BASIC}").as_str())
    );
    assert_eq!(request.header("Host"), Some(address.to_string().as_str()));
    assert!(
        request.path.contains(TOKEN),
        "the server gets its token: {}",
        request.path
    );

    let records = files_under(out.path());
    assert!(records.iter().any(|(path, _)| path.ends_with(".ndjson")));
    for (path, text) in &records {
        if path.ends_with(".ndjson") {
            assert!(text.contains("access_token=[redacted]"), "{path}: {text}");
        }
        assert_no_secret(path, text);
    }
    let checkpoint = state.path().join("pipelines/default/checkpoint.json");
    let stored = std::fs::read_to_string(&checkpoint).unwrap();
    assert!(stored.contains("\"last_event_id\":\"9\""), "{stored}");
    assert!(stored.contains("hmac-sha256:"), "{stored}");
    for (path, text) in files_under(state.path()) {
        assert_no_secret(&path, &text);
    }
}

/// A server at `/start` that redirects to `target`, whose stream is ten events.
fn redirect_to(target: String) -> SseServer {
    SseServer::start(move |_, _| {
        Answer::Respond(Response::plain(307, "text/plain", "").with_header("Location", &target))
    })
}

#[test]
fn a_redirect_to_another_origin_drops_the_given_headers_unless_told_to_keep_them() {
    for keep in [false, true] {
        let target = SseServer::always(Response::text("id: 1\ndata: one\n\n"));
        let start = redirect_to(target.url("/moved"));
        let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut command = run_command(&start.url("/start"), state.path());
        command
            .args(["--once", "--sink", &file_sink(out.path())])
            .args(["--header", "X-Api-Key: k3y-for-the-first-origin"])
            .args(["--allow-origin", &format!("http://{}", target.address())]);
        if keep {
            command.arg("--keep-headers-on-redirect");
        }
        let output = run_with_limit(&mut command, LIMIT);
        assert!(output.status.success(), "{}", stderr_of(&output));
        assert_eq!(
            start.requests()[0].header("X-Api-Key"),
            Some("k3y-for-the-first-origin")
        );
        let moved = &target.requests()[0];
        assert_eq!(moved.path, "/moved");
        let expected = keep.then_some("k3y-for-the-first-origin");
        assert_eq!(moved.header("X-Api-Key"), expected, "keep: {keep}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_the_url_never_reach_the_dynamodb_checkpoint() {
    const TABLE: &str = "secret-checkpoints";
    let dynalite = support::dynalite::Dynalite::start();
    dynalite.create_checkpoint_table(TABLE).await;
    let server = SseServer::always(Response::text(
        &(0..10)
            .map(|n| format!("id: {n}\ndata: {{\"n\":{n}}}\n\n"))
            .collect::<String>(),
    ));
    let url = format!(
        "http://alice:{PASSWORD}@{}/s?access_token={TOKEN}&wiki=en",
        server.address()
    );
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut command = run_command(&url, state.path());
    command.args(["--once", "--sink", &file_sink(out.path())]);
    command.args(["--checkpoint-store", &format!("dynamodb:{TABLE}")]);
    command.args(["--checkpoint-endpoint-url", &dynalite.endpoint()]);
    command.args(["--region", "us-east-1"]);
    support::local_aws_credentials(&mut command);
    let output = tokio::task::spawn_blocking(move || run_with_limit(&mut command, LIMIT))
        .await
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert_no_secret("the log", &stderr);
    let item = dynalite
        .item(TABLE, "default")
        .await
        .expect("the checkpoint item");
    assert_eq!(
        support::dynalite::field(&item, "last_event_id"),
        Some("9"),
        "{item:?}"
    );
    let text = format!("{item:?}");
    assert!(text.contains("access_token=[redacted]"), "{text}");
    assert!(text.contains("hmac-sha256:"), "{text}");
    assert_no_secret("the DynamoDB item", &text);
}

#[test]
fn a_url_from_the_environment_in_a_config_file_is_a_secret_too() {
    let server = SseServer::always(Response::text("id: 1\ndata: one\n\n"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    let file = dir.path().join("sse-ingest.toml");
    std::fs::write(
        &file,
        format!(
            "state_dir = {:?}\ncache_dir = {:?}\n\n[[pipeline]]\nname = \"env-url\"\n\
             url = \"${{SSE_INGEST_TEST_URL}}\"\nsink = \"file:{}\"\nonce = true\n",
            dir.path().join("state").display().to_string(),
            cache.display().to_string(),
            out.display()
        ),
    )
    .unwrap();
    let mut command = support::sse_ingest();
    command.args(["run", "--config"]).arg(&file).env(
        "SSE_INGEST_TEST_URL",
        format!(
            "http://alice:{PASSWORD}@{}/s?access_token={TOKEN}",
            server.address()
        ),
    );
    let output = run_with_limit(&mut command, LIMIT);
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert_no_secret("the log", &stderr);
    assert_eq!(
        server.requests()[0].header("Authorization"),
        Some(format!("Basic {BASIC}").as_str())
    );
    assert_eq!(support::file_sink_lines(&out), vec!["one".to_string()]);
}
