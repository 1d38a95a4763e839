//! Past one machine, through the real binary: a config's pipelines spread over replicas
//! (`--shard I/N`), and checkpoints in DynamoDB (dynalite, a real implementation of its API
//! on 127.0.0.1) that a new replica takes over and a stale one can never overwrite, even
//! when DynamoDB's answers are lost, and that an idle stale one learns of by its heartbeat.

use crate::support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::ambiguous::AmbiguousProxy;
use support::dynalite::{Dynalite, field};
use support::numbered::{frame, numbers, resume_point};
use support::sse_server::{Answer, Response, SseServer, Step};
use support::{
    WithAdmin, file_sink, file_sink_lines, run_command, run_with_limit, sse_ingest, stderr_of,
    wait_until,
};

const LIMIT: Duration = Duration::from_secs(120);
const TABLE: &str = "sse-ingest-checkpoints";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Events `from..to` in chunks of 50, each chunk `pause` after the last: a stream that
/// lasts long enough to be interrupted, and resumes after a `Last-Event-ID`.
fn numbered_stream(from: u64, to: u64, pause: Duration) -> Response {
    let mut steps = Vec::new();
    let mut n = from;
    while n < to {
        let end = (n + 50).min(to);
        steps.push(Step::Bytes(
            (n..end).map(frame).collect::<String>().into_bytes(),
        ));
        steps.push(Step::Pause(pause));
        n = end;
    }
    Response::stream(steps)
}

/// `run` of the pipeline `default` at `url` into `out`, checkpointing every 20 ms into the
/// DynamoDB table of `dynalite`, with `state` as its (local) state directory.
fn dynamodb_run(url: &str, state: &Path, out: &Path, dynalite: &Dynalite) -> Command {
    let mut command = checkpointing_into(url, state, out, &dynalite.endpoint());
    command.args([
        "--checkpoint-interval-ms",
        "20",
        "--batch-max-events",
        "100",
    ]);
    command
}

/// `run` of the pipeline `default` at `url` into `out`, its checkpoints in the table at
/// `endpoint`, with `state` as its (local) state directory.
fn checkpointing_into(url: &str, state: &Path, out: &Path, endpoint: &str) -> Command {
    let mut command = run_command(url, state);
    command.args(["--sink", &file_sink(out)]);
    command.args(["--checkpoint-store", &format!("dynamodb:{TABLE}")]);
    command.args(["--checkpoint-endpoint-url", endpoint]);
    command.args(["--region", "us-east-1"]);
    // The standard credential chain reads these; dynalite checks none.
    command
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local")
        .env_remove("AWS_PROFILE");
    command
}

/// The table's item of the pipeline `default`, if any.
fn item(runtime: &tokio::runtime::Runtime, dynalite: &Dynalite) -> Option<Vec<(String, String)>> {
    runtime.block_on(dynalite.item(TABLE, "default"))
}

/// The last acknowledged event number the table holds.
fn stored_checkpoint(runtime: &tokio::runtime::Runtime, dynalite: &Dynalite) -> Option<u64> {
    item(runtime, dynalite)?
        .iter()
        .find(|(name, _)| name == "last_event_id")?
        .1
        .parse()
        .ok()
}

/// Whether the item's `owner` is the process `pid` (`host/pid/random`).
fn owned_by(item: &[(String, String)], pid: u32) -> bool {
    field(item, "owner").is_some_and(|owner| owner.contains(&format!("/{pid}/")))
}

#[test]
fn a_pipeline_killed_with_sigkill_resumes_from_dynamodb_with_an_empty_state_directory() {
    const TOTAL: u64 = 8_000;
    let runtime = runtime();
    let dynalite = Dynalite::start();
    runtime.block_on(dynalite.create_checkpoint_table(TABLE));
    let server = SseServer::start(|_, request| {
        Answer::Respond(numbered_stream(
            resume_point(request),
            TOTAL,
            Duration::from_millis(4),
        ))
    });
    let out = tempfile::tempdir().unwrap();
    let first_state = tempfile::tempdir().unwrap();
    let mut first = dynamodb_run(&server.url("/s"), first_state.path(), out.path(), &dynalite)
        .arg("--once")
        .spawn()
        .unwrap();
    // Killed once the table holds progress, wherever the stream is then.
    wait_until(
        "a checkpoint past event 2000 in the table",
        LIMIT,
        || {
            stored_checkpoint(&runtime, &dynalite).is_some_and(|n| n >= 2_000)
                || first.try_wait().unwrap().is_some()
        },
        String::new,
    );
    let _ = Command::new("kill")
        .arg("-9")
        .arg(first.id().to_string())
        .status();
    let _ = first.wait();
    let stored = stored_checkpoint(&runtime, &dynalite).unwrap();
    assert!(
        stored < TOTAL - 1,
        "the first process ended before the kill"
    );

    // Another machine: nothing on its local disk.
    let second_state = tempfile::tempdir().unwrap();
    let output = run_with_limit(
        dynamodb_run(
            &server.url("/s"),
            second_state.path(),
            out.path(),
            &dynalite,
        )
        .arg("--once"),
        LIMIT,
    );
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("taking over the checkpoint"), "{stderr}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2, "one connection per process");
    assert_eq!(requests[0].header("last-event-id"), None);
    assert_eq!(
        requests[1].header("last-event-id"),
        Some(stored.to_string().as_str()),
        "the new process resumes from the table's checkpoint"
    );
    assert!(
        !second_state
            .path()
            .join("pipelines/default/checkpoint.json")
            .exists(),
        "the checkpoint went to DynamoDB, not to a local file"
    );
    let delivered: BTreeSet<u64> = numbers(&file_sink_lines(out.path())).into_iter().collect();
    assert!(
        delivered.iter().copied().eq(0..TOTAL),
        "an event is missing"
    );
    assert_eq!(stored_checkpoint(&runtime, &dynalite), Some(TOTAL - 1));
}

#[test]
fn a_writer_fenced_by_a_newer_owner_stops_its_pipeline_and_never_overwrites() {
    let runtime = runtime();
    let dynalite = Dynalite::start();
    runtime.block_on(dynalite.create_checkpoint_table(TABLE));
    // Streams long enough that both processes are still reading when the test ends them.
    let server = SseServer::start(|_, request| {
        let from = resume_point(request);
        Answer::Respond(numbered_stream(
            from,
            from + 500_000,
            Duration::from_millis(5),
        ))
    });
    let (first_state, first_out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = WithAdmin::start(&mut dynamodb_run(
        &server.url("/s"),
        first_state.path(),
        first_out.path(),
        &dynalite,
    ));
    let first_pid = first.child.id();
    wait_until(
        "the first process writing checkpoints",
        LIMIT,
        || {
            item(&runtime, &dynalite).is_some_and(|item| {
                owned_by(&item, first_pid)
                    && field(&item, "version").and_then(|v| v.parse::<u64>().ok()) >= Some(3)
            })
        },
        || first.stderr(),
    );

    // A second replica takes the pipeline over (its own machine: its own directories).
    let (second_state, second_out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let second = WithAdmin::start(&mut dynamodb_run(
        &server.url("/s"),
        second_state.path(),
        second_out.path(),
        &dynalite,
    ));
    let second_pid = second.child.id();
    second.wait_for_log("taking over the checkpoint", LIMIT);

    // The first one's next write is refused: its pipeline stops, saying who took it, and the
    // process ends with "handed over" (4), which a supervisor must not count as a crash.
    let (status, stderr) = first.finish(LIMIT);
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("another owner took the pipeline over"),
        "{stderr}"
    );
    assert!(
        stderr.contains("another owner took pipeline `default`"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("/{second_pid}/")), "{stderr}");
    second.wait_for_metric(
        "sse_ingest_records_written_total{pipeline=\"default\"}",
        500.0,
        LIMIT,
    );
    let now = item(&runtime, &dynalite).unwrap();
    assert!(owned_by(&now, second_pid), "overwritten: {now:?}");

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(second_pid.to_string())
        .status();
    let (status, stderr) = second.finish(LIMIT);
    assert!(status.success(), "{stderr}");
    // Nothing lost between the two: every event up to the last one written is there.
    let mut delivered: BTreeSet<u64> = numbers(&file_sink_lines(first_out.path()))
        .into_iter()
        .collect();
    delivered.extend(numbers(&file_sink_lines(second_out.path())));
    let last = delivered.last().copied().unwrap();
    assert!(
        delivered.iter().copied().eq(0..=last),
        "an event is missing"
    );
}

#[test]
fn a_thousand_checkpoint_writes_with_one_in_twenty_answers_lost_never_fence_their_writer() {
    const TOTAL: u64 = 1_200;
    let runtime = runtime();
    let dynalite = Dynalite::start();
    runtime.block_on(dynalite.create_checkpoint_table(TABLE));
    // Every 20th PutItem is applied by dynalite and answered 500: 5% ambiguous answers.
    let proxy = AmbiguousProxy::start(address_of(&dynalite.endpoint()), 20);
    let server = SseServer::start(|_, request| {
        Answer::Respond(numbered_stream(
            resume_point(request),
            TOTAL,
            Duration::from_millis(1),
        ))
    });
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut command = checkpointing_into(
        &server.url("/s"),
        state.path(),
        out.path(),
        &proxy.endpoint(),
    );
    // One event per batch, a checkpoint after every batch: a write per event.
    command.args(["--checkpoint-interval-ms", "0", "--batch-max-events", "1"]);
    let writer = WithAdmin::start(command.arg("--once"));
    let pid = writer.child.id();
    let (status, stderr) = writer.finish(LIMIT);
    assert!(status.success(), "{stderr}");
    assert!(proxy.puts() >= 1_000, "only {} writes", proxy.puts());
    assert!(proxy.lied() >= 50, "only {} lost answers", proxy.lied());
    // dynalite returns no item with a failed condition: the consistent read decided.
    assert!(
        stderr.contains("the table holds it: written") && stderr.contains("consistent read"),
        "{stderr}"
    );
    assert!(!stderr.contains("another owner"), "{stderr}");
    let delivered: BTreeSet<u64> = numbers(&file_sink_lines(out.path())).into_iter().collect();
    assert!(
        delivered.iter().copied().eq(0..TOTAL),
        "an event is missing"
    );
    let item = item(&runtime, &dynalite).unwrap();
    assert!(owned_by(&item, pid), "{item:?}");
    assert_eq!(
        field(&item, "last_event_id"),
        Some((TOTAL - 1).to_string().as_str())
    );
}

#[test]
fn an_idle_owner_stops_within_the_heartbeat_interval_after_a_takeover() {
    const HEARTBEAT: Duration = Duration::from_millis(1_000);
    let runtime = runtime();
    let dynalite = Dynalite::start();
    runtime.block_on(dynalite.create_checkpoint_table(TABLE));
    // 100 events, then nothing for ten minutes: no checkpoint write would tell the first
    // owner anything.
    let server = SseServer::start(|_, request| {
        let from = resume_point(request);
        let mut steps = vec![Step::Bytes(
            (from..from + 100)
                .map(frame)
                .collect::<String>()
                .into_bytes(),
        )];
        steps.push(Step::Pause(Duration::from_secs(600)));
        Answer::Respond(Response::stream(steps))
    });
    let idle_run = |state: &Path, out: &Path| {
        let mut command = dynamodb_run(&server.url("/s"), state, out, &dynalite);
        command.args([
            "--checkpoint-heartbeat-ms",
            &HEARTBEAT.as_millis().to_string(),
        ]);
        command
    };
    let (first_state, first_out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = WithAdmin::start(&mut idle_run(first_state.path(), first_out.path()));
    let first_pid = first.child.id();
    wait_until(
        "the first process's last checkpoint",
        LIMIT,
        || {
            item(&runtime, &dynalite).is_some_and(|item| {
                owned_by(&item, first_pid) && field(&item, "last_event_id") == Some("99")
            })
        },
        || first.stderr(),
    );

    let (second_state, second_out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let second = WithAdmin::start(&mut idle_run(second_state.path(), second_out.path()));
    let second_pid = second.child.id();
    second.wait_for_log("taking over the checkpoint", LIMIT);
    let taken_at = Instant::now();

    let (status, stderr) = first.finish(LIMIT);
    let stopped_after = taken_at.elapsed();
    assert_eq!(status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("another owner took the pipeline over"),
        "{stderr}"
    );
    assert!(stderr.contains(&format!("/{second_pid}/")), "{stderr}");
    // One beat, plus the time to read, stop and exit on a busy machine; without the
    // heartbeat it would hold its connection for the stream's ten quiet minutes.
    assert!(
        stopped_after < HEARTBEAT + Duration::from_secs(10),
        "stopped {stopped_after:?} after the takeover"
    );
    assert!(owned_by(&item(&runtime, &dynalite).unwrap(), second_pid));

    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(second_pid.to_string())
        .status();
    let (status, stderr) = second.finish(LIMIT);
    assert!(status.success(), "{stderr}");
}

#[test]
fn two_deployments_sharing_a_table_under_their_own_namespaces_never_take_each_others_pipeline() {
    const EVENTS: u64 = 40;
    let runtime = runtime();
    let dynalite = Dynalite::start();
    runtime.block_on(dynalite.create_checkpoint_table(TABLE));
    let server = SseServer::always(Response::text(&(0..EVENTS).map(frame).collect::<String>()));
    let mut owners = Vec::new();
    for namespace in ["blue", "green"] {
        let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut command = dynamodb_run(&server.url("/s"), state.path(), out.path(), &dynalite);
        command.args(["--once", "--checkpoint-namespace", namespace]);
        let child = command.spawn().unwrap();
        owners.push((namespace, child.id()));
        let output = support::wait_with_limit(child, LIMIT);
        let stderr = stderr_of(&output);
        assert!(output.status.success(), "{stderr}");
        // The same pipeline name under one key would be taken over from the first.
        assert!(!stderr.contains("taking over the checkpoint"), "{stderr}");
    }
    for (namespace, pid) in owners {
        let key = format!("{namespace}/default");
        let item = runtime.block_on(dynalite.item(TABLE, &key)).unwrap();
        assert!(owned_by(&item, pid), "{key}: {item:?}");
        assert_eq!(
            field(&item, "last_event_id"),
            Some((EVENTS - 1).to_string().as_str())
        );
    }
    assert_eq!(
        item(&runtime, &dynalite),
        None,
        "an item without a namespace"
    );
}

/// `127.0.0.1:PORT` of `http://127.0.0.1:PORT`.
fn address_of(endpoint: &str) -> SocketAddr {
    endpoint.trim_start_matches("http://").parse().unwrap()
}

#[test]
fn a_missing_checkpoint_table_is_a_startup_error_naming_it() {
    let dynalite = Dynalite::start();
    let server = SseServer::always(Response::text(&frame(0)));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let output = run_with_limit(
        dynamodb_run(&server.url("/s"), state.path(), out.path(), &dynalite).arg("--once"),
        LIMIT,
    );
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("the checkpoint table `{TABLE}` does not exist")),
        "{stderr}"
    );
    assert_eq!(
        server.connections(),
        0,
        "it connected without a checkpoint store"
    );
}

/// A config file of `servers.len()` pipelines `p0`, `p1`, ... reading `--once` into `out`.
fn sharded_config(
    dir: &Path,
    servers: &[SseServer],
    out: &Path,
    admin: bool,
) -> std::path::PathBuf {
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("component-cache");
    let mut text = format!(
        "state_dir = {:?}\ncache_dir = {:?}\n",
        dir.join("state").display().to_string(),
        cache.display().to_string()
    );
    if admin {
        text.push_str("\n[admin]\naddress = \"127.0.0.1:0\"\n");
    }
    text.push_str(&format!(
        "\n[defaults]\nonce = true\nsink = \"file:{}\"\n",
        out.display()
    ));
    for (n, server) in servers.iter().enumerate() {
        text.push_str(&format!(
            "\n[[pipeline]]\nname = \"p{n}\"\nurl = \"{}\"\n",
            server.url("/s")
        ));
    }
    let file = dir.join("pipelines.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `sse-ingest shards FILE --count N`: the names of each shard's pipelines.
fn assignment(file: &Path, count: u32) -> Vec<BTreeSet<String>> {
    let output = run_with_limit(
        sse_ingest()
            .arg("shards")
            .arg(file)
            .args(["--count", &count.to_string()]),
        LIMIT,
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    let shards: Vec<BTreeSet<String>> = text
        .lines()
        .map(|line| {
            line.split_once("pipelines: ")
                .or_else(|| line.split_once("pipeline: "))
                .map(|(_, names)| names.split(", ").map(str::to_string).collect())
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(shards.len(), count as usize, "{text}");
    shards
}

#[test]
fn two_shards_run_each_of_ten_pipelines_exactly_once() {
    const EVENTS: u64 = 40;
    let servers: Vec<SseServer> = (0..10)
        .map(|_| SseServer::always(Response::text(&(0..EVENTS).map(frame).collect::<String>())))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = sharded_config(dir.path(), &servers, &out, false);
    let shards = assignment(&file, 2);
    let replicas: Vec<_> = ["0/2", "1/2"]
        .iter()
        .map(|shard| {
            sse_ingest()
                .arg("run")
                .arg("--config")
                .arg(&file)
                .args(["--shard", shard])
                .spawn()
                .unwrap()
        })
        .collect();
    for (index, replica) in replicas.into_iter().enumerate() {
        let output = support::wait_with_limit(replica, LIMIT);
        let stderr = stderr_of(&output);
        assert!(output.status.success(), "{stderr}");
        assert_eq!(
            started_pipelines(&stderr),
            shards[index],
            "shard {index}: {stderr}"
        );
    }
    assert_eq!(shards[0].len() + shards[1].len(), 10);
    for (n, server) in servers.iter().enumerate() {
        assert_eq!(server.connections(), 1, "pipeline p{n}");
        let delivered = numbers(&file_sink_lines(&out.join(format!("p{n}"))));
        assert!(delivered.into_iter().eq(0..EVENTS), "pipeline p{n}");
    }
}

/// The names of the pipelines a run's log says it started.
fn started_pipelines(stderr: &str) -> BTreeSet<String> {
    stderr
        .lines()
        .filter(|line| line.contains("starting"))
        .filter_map(|line| {
            line.split_whitespace()
                .find_map(|word| word.strip_prefix("pipeline="))
                .map(str::to_string)
        })
        .collect()
}

/// The shard in the environment, as a container would set it: `run --config` once parsed
/// every pipeline's flags with the process's `SSE_INGEST_SHARD` too and panicked (exit 101),
/// which stopped every ECS task at start.
#[test]
fn a_shard_from_the_environment_runs_its_pipelines_and_never_panics() {
    const EVENTS: u64 = 5;
    let servers: Vec<SseServer> = (0..6)
        .map(|_| SseServer::always(Response::text(&(0..EVENTS).map(frame).collect::<String>())))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let file = sharded_config(dir.path(), &servers, &out, false);
    let shards = assignment(&file, 2);
    for (index, expected) in shards.iter().enumerate() {
        assert!(!expected.is_empty(), "shard {index} gets no pipeline");
        let output = run_with_limit(
            sse_ingest()
                .arg("run")
                .arg("--config")
                .arg(&file)
                .env("SSE_INGEST_SHARD", format!("{index}/2")),
            LIMIT,
        );
        let stderr = stderr_of(&output);
        assert!(output.status.success(), "shard {index}: {stderr}");
        assert!(!stderr.contains("panicked"), "shard {index}: {stderr}");
        assert_eq!(
            &started_pipelines(&stderr),
            expected,
            "shard {index}: {stderr}"
        );
    }
    for (n, server) in servers.iter().enumerate() {
        assert_eq!(server.connections(), 1, "pipeline p{n}");
        let delivered = numbers(&file_sink_lines(&out.join(format!("p{n}"))));
        assert!(delivered.into_iter().eq(0..EVENTS), "pipeline p{n}");
    }
}

#[test]
fn a_shard_without_pipelines_stays_up_healthy_until_stopped() {
    let servers = vec![SseServer::always(Response::text(&frame(0)))];
    let dir = tempfile::tempdir().unwrap();
    let file = sharded_config(dir.path(), &servers, &dir.path().join("out"), true);
    let empty = assignment(&file, 2)
        .iter()
        .position(BTreeSet::is_empty)
        .unwrap();
    let idle = WithAdmin::spawn(
        sse_ingest()
            .arg("run")
            .arg("--config")
            .arg(&file)
            .args(["--shard", &format!("{empty}/2")]),
    );
    idle.wait_for_log("no pipeline falls to this shard", LIMIT);
    let health = run_with_limit(
        sse_ingest()
            .args(["health", "--admin", &format!("127.0.0.1:{}", idle.port)])
            .arg("--ready"),
        LIMIT,
    );
    assert!(health.status.success(), "{}", stderr_of(&health));
    assert_eq!(servers[0].connections(), 0);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(idle.child.id().to_string())
        .status();
    let (status, stderr) = idle.finish(LIMIT);
    assert!(status.success(), "{stderr}");
}
