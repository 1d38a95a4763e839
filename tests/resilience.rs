//! Never stall, never lose: reconnects, Last-Event-ID resume, checkpoints and
//! crash safety, against a misbehaving SSE server on 127.0.0.1.

use crate::support;

use std::process::Command;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::numbered::{frame, numbers, paced_frames, resume_point};
use support::sse_server::{Answer, End, Response, SseServer, Step};
use support::{
    assert_exit_saying, file_sink, file_sink_lines, run_command, run_with_limit, sink_lines_so_far,
    stderr_of, summary_field, terminate_when,
};

/// A small deterministic generator, so a failing run can be replayed.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn fifty_thousand_events_survive_a_misbehaving_server_in_order() {
    const TOTAL: u64 = 50_000;
    let rng = Arc::new(Mutex::new(XorShift(0x5EED_1234_ABCD_0001)));
    let replays_sent = Arc::new(AtomicUsize::new(0));
    let server = {
        let rng = Arc::clone(&rng);
        let replays_sent = Arc::clone(&replays_sent);
        SseServer::start(move |index, request| {
            let mut rng = rng.lock().unwrap();
            let resume = resume_point(request);
            if resume >= TOTAL {
                return Answer::Respond(Response::plain(204, "text/plain", ""));
            }
            // Every few connections, an error status instead of a stream.
            match index % 9 {
                2 => return Answer::Respond(Response::plain(500, "text/plain", "overloaded")),
                5 if index < 20 => {
                    return Answer::Respond(
                        Response::plain(503, "text/plain", "later").with_header("Retry-After", "1"),
                    );
                }
                7 => return Answer::Respond(Response::plain(429, "text/plain", "slow down")),
                _ => {}
            }
            // Sometimes replay a few events the client already has.
            let start = if index % 4 == 1 && resume >= 5 {
                resume - 5
            } else {
                resume
            };
            let count = 800 + rng.below(3_000);
            let end = (start + count).min(TOTAL);
            let mut text = format!(
                "retry: {}\n: a comment is a heartbeat\n",
                [0, 10, 50][rng.below(3) as usize]
            );
            for n in start..end {
                text.push_str(&frame(n));
            }
            let replayed = resume.saturating_sub(start).min(end - start);
            // How this connection ends: clean, dropped mid-line, mid-event or
            // between events, or a stall with no bytes at all.
            let bytes = text.into_bytes();
            let (body, end_kind, complete_replays) = match rng.below(5) {
                0 => (bytes, End::Clean, replayed),
                1 => {
                    let cut = bytes.len() - 7; // inside the last data line
                    (
                        bytes[..cut].to_vec(),
                        End::Drop,
                        replayed.min(end - start - 1),
                    )
                }
                2 => {
                    let cut = bytes.len() - 1; // after the data line, before the blank line
                    (
                        bytes[..cut].to_vec(),
                        End::Drop,
                        replayed.min(end - start - 1),
                    )
                }
                3 => (bytes, End::Drop, replayed),
                _ => (bytes, End::Stall(Duration::from_secs(2)), replayed),
            };
            replays_sent.fetch_add(complete_replays as usize, Ordering::SeqCst);
            let mut steps = Vec::new();
            let mut offset = 0;
            while offset < body.len() {
                let size = (1 + rng.below(16 * 1024) as usize).min(body.len() - offset);
                steps.push(Step::Bytes(body[offset..offset + size].to_vec()));
                offset += size;
            }
            Answer::Respond(Response::stream(steps).ending(end_kind))
        })
    };
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/stream"), state.path());
    command.args(["--sink", &file_sink(out.path())]);
    command.args([
        "--idle-timeout-ms",
        "300",
        "--reconnect-min-ms",
        "10",
        "--reconnect-initial-ms",
        "20",
    ]);
    command.args(["--reconnect-max-ms", "200"]);
    let output = run_with_limit(&mut command, Duration::from_secs(240));
    let stderr = stderr_of(&output);
    assert_eq!(
        output.status.code(),
        Some(3),
        "expected the 204 stop: {stderr}"
    );
    assert!(stderr.contains("204"), "{stderr}");

    let delivered = numbers(&file_sink_lines(out.path()));
    assert_eq!(
        delivered.len() as u64,
        TOTAL,
        "missing or duplicated events"
    );
    assert!(
        delivered.iter().copied().eq(0..TOTAL),
        "events out of order"
    );

    let requests = server.requests();
    assert!(
        requests.len() > 20,
        "the server should have been reconnected to many times"
    );
    // Every reconnect resumes from an id the client really had: a number of the stream,
    // never going back (the client only moves forward, replays included).
    let mut resumed_from = Vec::new();
    for request in requests.iter().skip(1) {
        let id = request
            .header("last-event-id")
            .expect("a reconnect without Last-Event-ID");
        let n: u64 = id
            .parse()
            .unwrap_or_else(|_| panic!("not an id of the stream: {id:?}"));
        assert!(n < TOTAL, "Last-Event-ID {n} was never sent");
        resumed_from.push(n);
    }
    assert!(
        resumed_from.windows(2).all(|w| w[0] <= w[1]),
        "Last-Event-ID went back: {resumed_from:?}"
    );
    assert_eq!(requests[0].header("last-event-id"), None);
    let replays = replays_sent.load(Ordering::SeqCst) as u64;
    assert!(replays > 0, "the scenario should replay events");
    assert_eq!(
        summary_field(&stderr, "duplicates_dropped"),
        replays,
        "{stderr}"
    );
    assert!(
        stderr.contains("reconnecting"),
        "every reconnect is logged: {stderr}"
    );
}

#[test]
fn sigkill_at_any_moment_loses_nothing_and_tears_no_record() {
    const TOTAL: u64 = 20_000;
    const BATCH: u64 = 100;
    let server = SseServer::start(|_, request| {
        let start = resume_point(request);
        let mut steps = Vec::new();
        let mut n = start;
        while n < TOTAL {
            let end = (n + 50).min(TOTAL);
            let text: String = (n..end).map(frame).collect();
            steps.push(Step::Bytes(text.into_bytes()));
            steps.push(Step::Pause(Duration::from_millis(4)));
            n = end;
        }
        Answer::Respond(Response::stream(steps))
    });
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let command = || {
        let mut command = run_command(&server.url("/stream"), state.path());
        command.args(["--once", "--batch-max-events", &BATCH.to_string()]);
        // The duplicate bound below is for checkpoints written every 20 ms.
        command.args(["--checkpoint-interval-ms", "20"]);
        command.args(["--sink", &file_sink(out.path())]);
        command
    };
    // Kill at points of progress (records on disk), not at moments of the clock.
    let kills = [2_000usize, 7_000, 13_000];
    for written in kills {
        let mut child = command().spawn().unwrap();
        support::wait_until(
            &format!("{written} records on disk"),
            Duration::from_secs(120),
            || sink_lines_so_far(out.path()) >= written || child.try_wait().unwrap().is_some(),
            String::new,
        );
        let _ = Command::new("kill")
            .arg("-9")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
    }
    let output = run_with_limit(&mut command(), Duration::from_secs(120));
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("resuming from checkpoint"),
        "{}",
        stderr_of(&output)
    );

    let delivered = numbers(&file_sink_lines(out.path()));
    let mut first_seen = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for &n in &delivered {
        if seen.insert(n) {
            first_seen.push(n);
        }
    }
    assert!(
        first_seen.iter().copied().eq(0..TOTAL),
        "an event is missing or out of order"
    );
    let duplicates = delivered.len() as u64 - TOTAL;
    // What a kill can repeat: records acknowledged since the last checkpoint
    // write (at most 20 ms of them) plus one batch between write and checkpoint.
    let bound = kills.len() as u64 * (4 * BATCH + 250);
    eprintln!(
        "duplicates after {} kills: {duplicates} (bound {bound})",
        kills.len()
    );
    assert!(
        duplicates <= bound,
        "{duplicates} duplicates exceed the in-flight bound {bound}"
    );
}

#[test]
fn http_204_stops_the_pipeline_with_its_own_exit_code_and_no_retry() {
    let server = SseServer::always(Response::plain(204, "text/plain", ""));
    let state = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--sink", "stdout"]);
    let output = run_with_limit(&mut command, Duration::from_secs(30));
    assert_exit_saying(&output, 3, "204 No Content");
    assert_eq!(server.connections(), 1, "a 204 must not be retried");
}

#[test]
fn http_401_is_fatal_with_the_status_and_does_not_spin() {
    let server = SseServer::always(Response::plain(
        401,
        "application/json",
        r#"{"error":"bad token"}"#,
    ));
    let state = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--sink", "stdout"]);
    let output = run_with_limit(&mut command, Duration::from_secs(30));
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    assert!(
        stderr.contains("HTTP 401") && stderr.contains("bad token"),
        "{stderr}"
    );
    assert_eq!(
        server.connections(),
        1,
        "a fatal status must not be retried"
    );
}

#[test]
fn sigterm_while_data_keeps_arriving_stops_promptly_and_writes_whole_records() {
    // An endless stream: the source must notice the stop between chunks.
    let server = SseServer::start(|_, _| {
        Answer::Respond(Response::stream(paced_frames(
            20_000,
            Duration::from_millis(1),
        )))
    });
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--sink", &file_sink(out.path())]);
    // Signal while data keeps arriving: once a good part of the stream was sent.
    let (output, stopping) = terminate_when(
        &mut command,
        || server.body_bytes_sent() > 16 * 1024,
        Duration::from_secs(30),
    );
    assert!(
        stopping < Duration::from_secs(5),
        "stopping took {stopping:?}"
    );
    assert!(output.status.success(), "{}", stderr_of(&output));
    let delivered = numbers(&file_sink_lines(out.path()));
    assert!(!delivered.is_empty());
    assert!(delivered.iter().copied().eq(0..delivered.len() as u64));
    assert_eq!(
        summary_field(&stderr_of(&output), "records_written"),
        delivered.len() as u64
    );
}

#[test]
fn comment_heartbeats_keep_a_quiet_stream_alive_past_the_idle_timeout() {
    // 2 s of nothing but comments every 100 ms, with a 500 ms idle timeout.
    let mut steps = vec![Step::Bytes(frame(0).into_bytes())];
    for _ in 0..20 {
        steps.push(Step::Pause(Duration::from_millis(100)));
        steps.push(Step::Bytes(b": heartbeat\n".to_vec()));
    }
    steps.push(Step::Bytes(frame(1).into_bytes()));
    let server = SseServer::always(Response::stream(steps));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/s"), state.path());
    command.args(["--once", "--idle-timeout-ms", "500"]);
    command.args(["--sink", &file_sink(out.path())]);
    let output = run_with_limit(&mut command, Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(
        server.connections(),
        1,
        "a heartbeat stream must not be cut"
    );
    assert_eq!(numbers(&file_sink_lines(out.path())), vec![0, 1]);
}

/// 5,000 events whose ids come from `id_of`, in 16 KiB chunks, through `run --once`.
fn run_with_ids(id_of: fn(u64) -> u64) -> (Vec<u64>, String) {
    let body: String = (0..5_000u64)
        .map(|n| format!("id: {}\ndata: {{\"n\":{n}}}\n\n", id_of(n)))
        .collect();
    let steps = body
        .into_bytes()
        .chunks(16 * 1024)
        .map(|c| Step::Bytes(c.to_vec()))
        .collect();
    let server = SseServer::always(Response::stream(steps));
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/ids"), state.path());
    command.args(["--once", "--sink", &file_sink(out.path())]);
    let output = run_with_limit(&mut command, Duration::from_secs(120));
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    (numbers(&file_sink_lines(out.path())), stderr)
}

#[test]
fn ids_cycling_through_a_hundred_values_within_one_connection_lose_no_event() {
    let (delivered, stderr) = run_with_ids(|n| n % 100);
    assert!(
        delivered.iter().copied().eq(0..5_000),
        "{} of 5000",
        delivered.len()
    );
    assert_eq!(summary_field(&stderr, "duplicates_dropped"), 0);
}

#[test]
fn ids_shared_by_groups_of_ten_lose_no_event() {
    let (delivered, stderr) = run_with_ids(|n| n / 10);
    assert!(
        delivered.iter().copied().eq(0..5_000),
        "{} of 5000",
        delivered.len()
    );
    assert_eq!(summary_field(&stderr, "duplicates_dropped"), 0);
}

#[test]
fn a_server_repeating_the_last_fifty_events_on_every_resume_delivers_each_once() {
    const TOTAL: u64 = 3_000;
    // Each connection starts 50 events before the resume point and is cut after a
    // pseudo-random number of events, mid-event.
    let cuts = Arc::new(Mutex::new(XorShift(0x5eed_cafe)));
    let server = SseServer::start(move |_, request| {
        if resume_point(request) >= TOTAL {
            // Everything was delivered: "stop reconnecting" ends the run (exit 3).
            return Answer::Respond(Response::plain(204, "text/plain", ""));
        }
        let start = resume_point(request).saturating_sub(50);
        let length = 100 + cuts.lock().unwrap().below(400);
        let end = (start + length).min(TOTAL);
        let mut body: String = (start..end).map(frame).collect();
        if end < TOTAL {
            body.push_str("id: 999999\ndata: {\"n\":99");
            return Answer::Respond(Response::text(&body).ending(End::Drop));
        }
        Answer::Respond(Response::text(&body))
    });
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut command = run_command(&server.url("/replaying"), state.path());
    command
        .args(["--sink", &file_sink(out.path()), "--reconnect-max-ms", "20"])
        .args(support::FAST_RECONNECTS);
    let output = run_with_limit(&mut command, Duration::from_secs(120));
    let stderr = stderr_of(&output);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let delivered = numbers(&file_sink_lines(out.path()));
    assert!(
        delivered.iter().copied().eq(0..TOTAL),
        "{} records, first wrong at {:?}: {stderr}",
        delivered.len(),
        delivered.iter().zip(0..).find(|(a, b)| **a != *b)
    );
    assert!(summary_field(&stderr, "duplicates_dropped") >= 50);
}

#[test]
fn a_second_process_on_the_same_state_exits_two_and_the_first_runs_on_until_killed() {
    // The first connection streams for up to a minute; later ones end at once.
    let server = SseServer::start(|connection, _| {
        if connection > 0 {
            return Answer::Respond(Response::text("id: 0\ndata: {\"n\":0}\n\n"));
        }
        Answer::Respond(Response::stream(paced_frames(
            12_000,
            Duration::from_millis(5),
        )))
    });
    let state = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let command = || {
        let mut command = run_command(&server.url("/s"), state.path());
        command.args(["--sink", &file_sink(out.path())]);
        command
    };
    let mut first = command().spawn().unwrap();
    let limit = Duration::from_secs(60);
    let streamed = support::try_wait_until(limit, || server.body_bytes_sent() > 0);
    assert!(streamed.is_ok(), "the first process never streamed");

    let second = run_with_limit(&mut command(), Duration::from_secs(60));
    let lock_dir = state.path().join("pipelines").join("default");
    assert_exit_saying(&second, 2, "is running pipeline `default`");
    assert!(
        stderr_of(&second).contains(&lock_dir.display().to_string()),
        "{}",
        stderr_of(&second)
    );
    assert_eq!(server.connections(), 1, "the second process connected");
    let sent_before = server.body_bytes_sent();
    let _ = support::try_wait_until(limit, || server.body_bytes_sent() > sent_before);
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first process died"
    );
    assert!(
        server.body_bytes_sent() > sent_before,
        "the first process stopped reading"
    );

    let _ = Command::new("kill")
        .arg("-9")
        .arg(first.id().to_string())
        .status();
    let _ = first.wait();
    let mut third = command();
    third.arg("--once");
    let output = run_with_limit(&mut third, Duration::from_secs(60));
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(server.connections(), 2);
}

#[test]
fn a_checkpoint_of_another_url_is_never_sent_and_the_same_url_resumes() {
    let a = SseServer::always(Response::text(
        "id: a1\ndata: a-one\n\nid: a2\ndata: a-two\n\n",
    ));
    let b = SseServer::always(Response::text(
        "id: b1\ndata: b-one\n\nid: b2\ndata: b-two\n\n",
    ));
    let state = tempfile::tempdir().unwrap();
    let run = |server: &SseServer, extra: &[&str]| {
        let out = tempfile::tempdir().unwrap();
        let mut command = run_command(&server.url("/stream"), state.path());
        command
            .args(["--once", "--sink", &file_sink(out.path())])
            .args(extra);
        let output = run_with_limit(&mut command, Duration::from_secs(60));
        (output, file_sink_lines(out.path()))
    };

    let (output, _) = run(&a, &[]);
    assert!(output.status.success(), "{}", stderr_of(&output));

    let (output, records) = run(&b, &[]);
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(records, vec!["b-one", "b-two"]);
    assert_eq!(
        b.requests()[0].header("last-event-id"),
        None,
        "A's id sent to B"
    );
    let warning = stderr
        .lines()
        .find(|l| l.contains("not resuming from the checkpoint"))
        .unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(
        warning.contains(&a.url("/stream")) && warning.contains(&b.url("/stream")),
        "{warning}"
    );

    let (output, _) = run(&b, &[]);
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(b.requests()[1].header("last-event-id"), Some("b2"));

    let (output, _) = run(&a, &["--resume", "require"]);
    assert_exit_saying(&output, 2, &b.url("/stream"));
    assert_eq!(a.connections(), 1, "a refused start connected anyway");
}
