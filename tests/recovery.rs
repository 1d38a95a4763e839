//! Pipelines recover from what passes: an AWS endpoint that refuses connections or answers
//! 500 for its first ten seconds delays a pipeline's start, and the pipeline restarts in
//! the process (logged, counted) until it answers; the other pipelines of the process
//! never notice.

use crate::kinesis_support;
use crate::support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kinesis_support::{Kinesalite, create_stream, read_stream};
use support::dynalite::{Dynalite, field};
use support::numbered::numbers;
use support::outage::{Down, OutageGateway};
use support::sse_server::{Gate, Response, SseServer, Step};
use support::{
    WithAdmin, file_sink, file_sink_lines, run_command, run_with_limit, sink_lines_so_far,
    sse_ingest, stderr_of,
};

const OUTAGE: Duration = Duration::from_secs(10);
const LIMIT: Duration = Duration::from_secs(180);
const RESTARTING: &str = "transient failure: restarting the pipeline";

/// `id: N` / `data: {"n":N}` for `from..to`, as one step.
fn numbered(from: u64, to: u64) -> Step {
    let text: String = (from..to)
        .map(|n| format!("id: {n}\ndata: {{\"n\":{n}}}\n\n"))
        .collect();
    Step::Bytes(text.into_bytes())
}

/// The address behind an `http://127.0.0.1:PORT` endpoint.
fn address_of(endpoint: &str) -> SocketAddr {
    endpoint.trim_start_matches("http://").parse().unwrap()
}

/// The `n` of every record of `stream`, sorted.
async fn stream_numbers(kinesalite: &Kinesalite, stream: &str) -> Vec<u64> {
    let mut found: Vec<u64> = read_stream(&kinesalite.client(), stream)
        .await
        .iter()
        .map(|record| {
            let value: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
            value["n"].as_u64().unwrap()
        })
        .collect();
    found.sort_unstable();
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kinesis_endpoint_refusing_connections_for_ten_seconds_gets_every_event_once_it_answers()
{
    const TOTAL: u64 = 2_000;
    let kinesalite = Kinesalite::start();
    create_stream(&kinesalite.client(), "comes-back", 2).await;
    let gateway = OutageGateway::start(address_of(&kinesalite.endpoint()), Down::Refusing, OUTAGE);
    let back_at = std::time::Instant::now() + OUTAGE;
    let server = SseServer::always(Response::stream(vec![numbered(0, TOTAL)]));
    let state = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args([
        "--once",
        "--sink",
        "kinesis:comes-back",
        "--region",
        "us-east-1",
    ]);
    command.args(["--endpoint-url", &gateway.endpoint()]);
    support::local_aws_credentials(&mut command);
    let output = tokio::task::spawn_blocking(move || run_with_limit(&mut command, LIMIT))
        .await
        .unwrap();
    // The figure the issue asks for (run with --nocapture): from the endpoint's return to
    // the end of the run, every record written (restart delay + start + writing).
    eprintln!(
        "recovered: all {TOTAL} records written {:.2} s after the endpoint came back",
        std::time::Instant::now()
            .saturating_duration_since(back_at)
            .as_secs_f64()
    );
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(RESTARTING),
        "the refused start was restarted: {stderr}"
    );
    assert!(gateway.forwarded() > 0, "the endpoint answered in the end");
    assert_eq!(
        stream_numbers(&kinesalite, "comes-back").await,
        (0..TOTAL).collect::<Vec<_>>(),
        "every event once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_table_answering_500_for_ten_seconds_only_delays_the_start() {
    const TOTAL: u64 = 500;
    const TABLE: &str = "checkpoints-come-back";
    let dynalite = Dynalite::start();
    dynalite.create_checkpoint_table(TABLE).await;
    let gateway =
        OutageGateway::start(address_of(&dynalite.endpoint()), Down::Answering500, OUTAGE);
    let server = SseServer::always(Response::stream(vec![numbered(0, TOTAL)]));
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--once", "--sink", &file_sink(out.path())]);
    command.args(["--checkpoint-store", &format!("dynamodb:{TABLE}")]);
    command.args(["--checkpoint-endpoint-url", &gateway.endpoint()]);
    command.args(["--region", "us-east-1"]);
    support::local_aws_credentials(&mut command);
    let output = tokio::task::spawn_blocking(move || run_with_limit(&mut command, LIMIT))
        .await
        .unwrap();
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(gateway.answered_500() > 0, "the outage was met");
    assert!(stderr.contains(RESTARTING), "{stderr}");
    let written: Vec<u64> = numbers(&file_sink_lines(out.path()));
    assert_eq!(written, (0..TOTAL).collect::<Vec<_>>());
    let item = dynalite.item(TABLE, "default").await.unwrap();
    assert_eq!(
        field(&item, "last_event_id"),
        Some((TOTAL - 1).to_string().as_str()),
        "{item:?}"
    );
}

/// A server that sends `id: N` events, one every 20 ms, until `hold` opens or 100,000 are sent.
fn paced_server(hold: &Gate) -> SseServer {
    let hold = hold.clone();
    SseServer::start(move |_, _| {
        let mut steps = Vec::new();
        for block in 0..10_000u64 {
            steps.push(numbered(block * 10, block * 10 + 10));
            steps.push(Step::Pause(Duration::from_millis(200)));
        }
        steps.push(Step::Wait(hold.clone()));
        support::sse_server::Answer::Respond(Response::stream(steps))
    })
}

fn pipeline_text(name: &str, url: &str, sink: &str, extra: &str) -> String {
    format!("\n[[pipeline]]\nname = \"{name}\"\nurl = \"{url}\"\nsink = \"{sink}\"\n{extra}")
}

fn config_file(dir: &Path, pipelines: &[String]) -> std::path::PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    let mut text = format!(
        "state_dir = {:?}\ncache_dir = {:?}\n\n[admin]\naddress = \"127.0.0.1:0\"\n",
        dir.join("state").display().to_string(),
        cache.display().to_string(),
    );
    for pipeline in pipelines {
        text.push_str(pipeline);
    }
    let file = dir.join("sse-ingest.toml");
    std::fs::write(&file, text).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pipelines_kinesis_outage_leaves_the_other_two_writing_on_their_one_connection() {
    const KINESIS_EVENTS: u64 = 300;
    let kinesalite = Kinesalite::start();
    create_stream(&kinesalite.client(), "late", 1).await;
    let gateway = OutageGateway::start(address_of(&kinesalite.endpoint()), Down::Refusing, OUTAGE);
    let hold = Gate::default();
    let (first, second) = (paced_server(&hold), paced_server(&hold));
    let late_server = SseServer::always(Response::stream(vec![
        numbered(0, KINESIS_EVENTS),
        Step::Wait(hold.clone()),
    ]));
    let dir = tempfile::tempdir().unwrap();
    let (out_first, out_second) = (dir.path().join("first"), dir.path().join("second"));
    let file = config_file(
        dir.path(),
        &[
            pipeline_text(
                "first",
                &first.url("/s"),
                &format!("file:{}", out_first.display()),
                "",
            ),
            pipeline_text(
                "second",
                &second.url("/s"),
                &format!("file:{}", out_second.display()),
                "",
            ),
            pipeline_text(
                "late",
                &late_server.url("/s"),
                "kinesis:late",
                &format!(
                    "region = \"us-east-1\"\nendpoint_url = \"{}\"\n",
                    gateway.endpoint()
                ),
            ),
        ],
    );
    let mut command = sse_ingest();
    command.args(["run", "--config"]).arg(&file);
    support::local_aws_credentials(&mut command);
    let running = tokio::task::spawn_blocking(move || WithAdmin::spawn(&mut command))
        .await
        .unwrap();

    let restarts = "sse_ingest_pipeline_restarts_total{pipeline=\"late\"}";
    let running = tokio::task::spawn_blocking(move || {
        running.wait_for_metric(restarts, 1.0, LIMIT);
        running
    })
    .await
    .unwrap();
    // Written while `late` waits for its endpoint.
    let during_outage = (
        sink_lines_so_far(&out_first),
        sink_lines_so_far(&out_second),
    );
    let state: serde_json::Value =
        serde_json::from_str(&running.get("/pipelines/late").unwrap().1).unwrap();
    assert!(
        ["restarting", "starting"].contains(&state["state"].as_str().unwrap_or_default()),
        "{state}"
    );
    let (status, ready) = running.get("/ready").unwrap();
    assert_eq!(status, 503, "a restarting pipeline is not ready: {ready}");

    let written = "sse_ingest_records_written_total{pipeline=\"late\"}";
    let running = tokio::task::spawn_blocking(move || {
        running.wait_for_metric(written, KINESIS_EVENTS as f64, LIMIT);
        running
    })
    .await
    .unwrap();
    assert_eq!(
        stream_numbers(&kinesalite, "late").await,
        (0..KINESIS_EVENTS).collect::<Vec<_>>()
    );
    let after_outage = (
        sink_lines_so_far(&out_first),
        sink_lines_so_far(&out_second),
    );
    assert!(
        after_outage.0 > during_outage.0 && after_outage.1 > during_outage.1,
        "the others wrote throughout: {during_outage:?} then {after_outage:?}"
    );
    for (name, server) in [("first", &first), ("second", &second)] {
        assert_eq!(server.connections(), 1, "{name} kept its one connection");
        let restarts = running
            .metric(&format!(
                "sse_ingest_pipeline_restarts_total{{pipeline=\"{name}\"}}"
            ))
            .unwrap_or(-1.0);
        assert_eq!(restarts, 0.0, "{name} was never restarted");
    }
    assert_eq!(
        late_server.connections(),
        1,
        "late connected once it could write"
    );

    let _ = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status();
    let (status, stderr) = running.finish(LIMIT);
    hold.open();
    assert_eq!(status.code(), Some(0), "{stderr}");
    for (out, seen) in [(&out_first, after_outage.0), (&out_second, after_outage.1)] {
        let written = numbers(&file_sink_lines(out));
        assert!(written.len() >= seen, "{} < {seen}", written.len());
        assert!(
            written.iter().copied().eq(0..written.len() as u64),
            "in order, none lost or repeated"
        );
    }
}
