//! The file sink and the dead letters under quiet streams and full disks: a quiet stream's
//! records are in a finished file within the roll interval, and a full disk or a full
//! dead-letter output pauses the pipeline (visibly) until there is room, dropping nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::numbered::{frame, numbers, paced_frames};
use crate::support::sse_server::{Gate, Response, SseServer, Step};
use crate::support::{
    self, WithAdmin, dead_letters, file_sink, file_sink_lines, run_command, sink_lines_so_far,
    wait_until,
};

const LIMIT: Duration = Duration::from_secs(60);

/// Events `range` as one chunk each.
fn frames(range: std::ops::Range<u64>) -> Vec<Step> {
    range.map(|n| Step::Bytes(frame(n).into_bytes())).collect()
}

/// A server that sends events 0 to 4, then keeps the stream open and silent until `quiet`
/// opens (or the server stops).
fn five_events_then_quiet(quiet: &Gate) -> SseServer {
    let mut steps = frames(0..5);
    steps.push(Step::Wait(quiet.clone()));
    SseServer::always(Response::stream(steps))
}

/// Runs the binary on five events and a quiet open stream with `flags`; returns how long
/// after the five were written they were in finished `.ndjson` files (at most `limit`).
fn five_events_finished_after(flags: &[&str], limit: Duration) -> Duration {
    let quiet = Gate::default();
    let server = five_events_then_quiet(&quiet);
    let (state, out) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut command = run_command(&server.url("/s"), state.path());
    // Quiet for longer than the default roll interval, and still connected.
    command.args([
        "--sink",
        &file_sink(out.path()),
        "--idle-timeout-ms",
        "600000",
    ]);
    command.args(flags);
    let running = WithAdmin::start(&mut command);
    wait_until(
        "five records written",
        LIMIT,
        || sink_lines_so_far(out.path()) == 5,
        || running.stderr(),
    );
    let written = Instant::now();
    wait_until(
        "the five records in a finished file",
        limit,
        || file_sink_lines(out.path()).len() == 5,
        || format!("{:?}\n{}", files_under(out.path()), running.stderr()),
    );
    let finished = written.elapsed();
    assert_eq!(numbers(&file_sink_lines(out.path())), vec![0, 1, 2, 3, 4]);
    assert_eq!(
        running.metric("sse_ingest_connected{pipeline=\"default\"}"),
        Some(1.0),
        "the stream was still open: the file was rolled by age, not by an end"
    );
    running.kill();
    quiet.open();
    finished
}

#[test]
fn a_quiet_stream_is_rolled_by_age() {
    let took = five_events_finished_after(
        &["--file-roll-interval-ms", "5000"],
        Duration::from_secs(10),
    );
    eprintln!("finished {took:?} after the write with a 5 s roll interval");
}

#[test]
fn a_quiet_stream_is_rolled_by_the_default_interval() {
    let took = five_events_finished_after(&[], Duration::from_secs(65));
    eprintln!("finished {took:?} after the write with the default roll interval");
    assert!(
        took >= Duration::from_secs(50),
        "rolled after {took:?}, well before the default 60 s"
    );
}

#[test]
fn roll_settings_out_of_range_are_refused_naming_the_flag() {
    for (flag, value) in [
        ("--file-roll-interval-ms", "10"),
        ("--file-roll-bytes", "2000000000"),
        ("--dead-letter-max-bytes", "10"),
    ] {
        let state = tempfile::tempdir().unwrap();
        let mut command = run_command("http://127.0.0.1:9/s", state.path());
        command.args([flag, value]);
        let output = support::run_with_limit(&mut command, LIMIT);
        support::assert_exit_saying(
            &output,
            2,
            &format!("invalid {flag}: {value} is out of range"),
        );
    }
}

/// Every file under `dir`, for failure messages.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .collect()
}

/// Whether this machine lets an unprivileged test mount a tmpfs of its own (a user and
/// mount namespace). The full-disk test needs it.
fn can_mount_a_tmpfs() -> bool {
    let dir = tempfile::tempdir().unwrap();
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "--"])
        .args(["mount", "-t", "tmpfs", "-o", "size=64k", "probe"])
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// `command` (an `sse-ingest` command) inside its own user and mount namespace, over a
/// tmpfs of `size` mounted on `root`: a disk that can be filled without privileges. The
/// test reaches the tmpfs through `/proc/PID/root`, the process's own view of the files.
fn on_a_small_tmpfs(root: &Path, size: &str, command: &Command) -> Command {
    let mut outer = Command::new("unshare");
    outer
        .args(["--user", "--map-root-user", "--mount", "--", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o "size=$1" sse-ingest-test "$2" && shift 2 && exec "$@""#)
        .args(["sh", size])
        .arg(root)
        .arg(command.get_program())
        .args(command.get_args());
    for (name, value) in command.get_envs() {
        match value {
            Some(value) => outer.env(name, value),
            None => outer.env_remove(name),
        };
    }
    outer
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    outer
}

/// Event `n` with data of about 1 KiB, so that a few of them need a new page of a tmpfs.
fn large_frame(n: u64) -> Step {
    let pad = "x".repeat(1000);
    Step::Bytes(format!("id: {n}\ndata: {{\"n\":{n},\"pad\":\"{pad}\"}}\n\n").into_bytes())
}

/// The event id a checkpoint file holds, if it is there.
fn checkpointed(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["last_event_id"].as_str()?.parse().ok()
}

/// Fills the file system under `dir` with `dir/filler` until a write fails for want of
/// room; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write as _;
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let block = vec![b'x'; 4096];
    loop {
        match file.write_all(&block) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::StorageFull => return filler,
            Err(error) => panic!("filling {}: {error}", dir.display()),
        }
    }
}

#[test]
fn a_full_disk_pauses_the_pipeline_until_there_is_room_and_loses_nothing() {
    assert!(
        can_mount_a_tmpfs(),
        "this test needs `unshare --user --map-root-user --mount` to mount a tmpfs"
    );
    // Events 0 to 9, then 10 to 59 once the disk is full.
    let full = Gate::default();
    let mut steps: Vec<Step> = (0..10).map(large_frame).collect();
    steps.push(Step::Wait(full.clone()));
    steps.extend((10..60).map(large_frame));
    steps.push(Step::Wait(Gate::default()));
    let server = SseServer::always(Response::stream(steps));

    // The sink and the state (checkpoints, dead letters) on a 1 MiB tmpfs.
    let mount = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), &mount.path().join("state"));
    command.args(["--sink", &file_sink(&mount.path().join("out"))]);
    command.args(["--admin", "127.0.0.1:0"]);
    let running = WithAdmin::spawn(&mut on_a_small_tmpfs(mount.path(), "1m", &command));
    // The tmpfs, as the process sees it.
    let seen = Path::new("/proc")
        .join(running.child.id().to_string())
        .join("root")
        .join(mount.path().strip_prefix("/").unwrap());
    let out = seen.join("out");
    let checkpoint = seen.join("state/pipelines/default/checkpoint.json");
    let waiting = "sse_ingest_waiting_for_room{pipeline=\"default\"}";

    wait_until(
        "ten records written and checkpointed",
        LIMIT,
        || sink_lines_so_far(&out) == 10 && checkpointed(&checkpoint) == Some(9),
        || running.stderr(),
    );
    let filler = fill(&seen);
    full.open();
    running.wait_for_metric(waiting, 1.0, LIMIT);
    running.wait_for_log("no room to write", LIMIT);
    running.wait_for_metric(
        "sse_ingest_write_failures_total{pipeline=\"default\",reason=\"disk_full\"}",
        2.0,
        LIMIT,
    );
    let (_, status) = running.get("/pipelines/default").unwrap();
    assert!(status.contains("\"waiting_for_room\":true"), "{status}");
    // Nothing was acknowledged that is not written, and the checkpoint claims no more.
    let written = sink_lines_so_far(&out);
    assert!(written < 60, "the disk was not full: {}", running.stderr());
    assert_eq!(
        running.metric("sse_ingest_records_written_total{pipeline=\"default\"}"),
        Some(written as f64)
    );
    let stored = checkpointed(&checkpoint).unwrap();
    assert!(
        stored < written as u64,
        "the checkpoint ({stored}) claims records not written ({written})"
    );
    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    running.wait_for_log("room again: writing resumed", LIMIT);
    let resumed = freed.elapsed();
    eprintln!("writing resumed {resumed:?} after space returned");
    wait_until(
        "every event written",
        LIMIT,
        || sink_lines_so_far(&out) == 60,
        || running.stderr(),
    );
    assert_eq!(running.metric(waiting), Some(0.0));
    wait_until(
        "the checkpoint at the last event",
        LIMIT,
        || checkpointed(&checkpoint) == Some(59),
        || running.stderr(),
    );
    // Every event exactly once, in order, across finished and in-progress files.
    let mut files: Vec<PathBuf> = files_under(&out)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".ndjson"))
        .collect();
    files.sort();
    let lines: Vec<String> = files
        .iter()
        .flat_map(|file| {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(
                text.ends_with('\n'),
                "{} ends with a torn line",
                file.display()
            );
            text.lines().map(str::to_string).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(numbers(&lines), (0..60).collect::<Vec<u64>>());
    running.kill();
}

#[test]
fn a_full_dead_letter_output_pauses_the_pipeline_and_drops_nothing() {
    // Every batch fails in the filter, so every event is a dead letter (about 1 KiB with
    // the trap's message): a bound of 4 KiB holds a few. Paced, so each is a batch of its own.
    let mut steps = paced_frames(40, Duration::from_millis(20));
    steps.push(Step::Wait(Gate::default()));
    let server = SseServer::always(Response::stream(steps));
    let (state, out, dead) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let filter = sse_ingest::wasm::components::testing_filter_path("trap").unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--sink", &file_sink(out.path())]);
    command.args(["--dead-letter", &file_sink(dead.path())]);
    command.args(["--filter", filter, "--filter-config", "when=always"]);
    command.args([
        "--dead-letter-max-bytes",
        "1024",
        "--file-roll-interval-ms",
        "1000",
    ]);
    let running = WithAdmin::start(&mut command);
    let letters = "sse_ingest_dead_letters_total{pipeline=\"default\"}";
    running.wait_for_metric(
        "sse_ingest_waiting_for_room{pipeline=\"default\"}",
        1.0,
        LIMIT,
    );
    running.wait_for_metric(
        "sse_ingest_write_failures_total{pipeline=\"default\",reason=\"dead_letters_full\"}",
        1.0,
        LIMIT,
    );
    running.wait_for_log("--dead-letter-max-bytes", LIMIT);
    let (_, status) = running.get("/pipelines/default").unwrap();
    assert!(status.contains("\"waiting_for_room\":true"), "{status}");
    let paused_at = running.metric(letters).unwrap();
    assert!(paused_at < 40.0, "the bound held nothing back");

    // Moving finished files away makes room, as often as it takes, and every event ends
    // up a dead letter exactly once.
    let moved = tempfile::tempdir().unwrap();
    let finished = || -> Vec<PathBuf> {
        files_under(dead.path())
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "ndjson"))
            .collect()
    };
    let ids = || -> Vec<u64> {
        dead_letters(moved.path())
            .iter()
            .map(|letter| {
                letter["event"]["id"]
                    .as_str()
                    .and_then(|id| id.parse::<u64>().ok())
                    .unwrap()
            })
            .collect()
    };
    let mut files_moved = 0;
    let deadline = Instant::now() + LIMIT;
    loop {
        for file in finished() {
            files_moved += 1;
            let target = moved.path().join(format!("{files_moved:04}.ndjson"));
            std::fs::rename(&file, &target).unwrap();
        }
        if ids().len() >= 40 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dead letters missing: {:?}\n{}",
            ids(),
            running.stderr()
        );
        // Until the pipeline finishes the next file (at the bound, or by age).
        let _ = support::try_wait_until(LIMIT, || !finished().is_empty());
    }
    let mut ids = ids();
    ids.sort_unstable();
    assert_eq!(
        ids,
        (0..40).collect::<Vec<u64>>(),
        "each event a dead letter exactly once"
    );
    assert_eq!(running.metric(letters), Some(40.0));
    assert!(
        file_sink_lines(out.path()).is_empty(),
        "no event reached the sink"
    );
    running.wait_for_log("room again: writing resumed", LIMIT);
    running.kill();
}
