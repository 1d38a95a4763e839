//! The Kinesis sink through the real binary, against kinesalite (a real
//! implementation of the Kinesis API, started on 127.0.0.1) and, for faults,
//! the fault-injecting proxy of the producer's test support.

use crate::kinesis_support;
use crate::support;

use std::collections::HashMap;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use base64::Engine as _;
use kinesis_support::chaos::{ChaosConfig, Counters};
use kinesis_support::{Kinesalite, ProxiedStream, create_stream, read_stream};
use support::proxy::TestProxy;
use support::sse_server::{Response, SseServer, Step};
use support::{
    dead_letters, http_request, isolated, run_with_limit, sse_ingest, stderr_of, summary_field,
    terminate_when,
};

fn numbered_body(total: u64, keys: u64) -> Vec<Step> {
    let text: String = (0..total)
        .map(|n| {
            format!(
                "id: {n}\ndata: {{\"n\":{n},\"k\":\"key-{}\"}}\n\n",
                n % keys
            )
        })
        .collect();
    text.into_bytes()
        .chunks(32 * 1024)
        .map(|c| Step::Bytes(c.to_vec()))
        .collect()
}

/// `sse-ingest run --sink kinesis:STREAM` against `endpoint`, with a private state dir.
fn kinesis_command(
    url: &str,
    stream: &str,
    endpoint: &str,
    extra: &[&str],
) -> (Command, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let mut command = sse_ingest();
    command.args(["run", "--url", url, "--sink", &format!("kinesis:{stream}")]);
    command.args(["--endpoint-url", endpoint, "--region", "us-east-1"]);
    command.args(extra);
    // The standard credential chain reads these; kinesalite checks none.
    command
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local");
    command.env_remove("AWS_PROFILE");
    isolated(&mut command, state.path());
    (command, state)
}

/// Runs `sse-ingest run --once --sink kinesis:STREAM` against `endpoint`.
async fn run_into_kinesis(
    url: String,
    stream: &str,
    endpoint: String,
    extra: &[&str],
) -> (Output, tempfile::TempDir) {
    let mut flags = vec!["--once"];
    flags.extend_from_slice(extra);
    let (mut command, state) = kinesis_command(&url, stream, &endpoint, &flags);
    let output =
        tokio::task::spawn_blocking(move || run_with_limit(&mut command, Duration::from_secs(300)))
            .await
            .unwrap();
    (output, state)
}

/// An endless numbered stream (one event a millisecond), for tests that stop the binary.
fn endless_body() -> Vec<Step> {
    (0..100_000u64)
        .flat_map(|n| {
            [
                Step::Bytes(
                    format!("id: {n}\ndata: {{\"n\":{n},\"k\":\"key-{}\"}}\n\n", n % 10)
                        .into_bytes(),
                ),
                Step::Pause(Duration::from_millis(1)),
            ]
        })
        .collect()
}

/// The event numbers in `stored`, sorted.
fn sorted_numbers(stored: &[kinesis_support::Stored]) -> Vec<u64> {
    let mut numbers: Vec<u64> = numbers_by_key(stored).into_values().flatten().collect();
    numbers.sort_unstable();
    numbers
}

/// Event numbers per partition key, in stream order (each shard is ordered; a key lives on one shard).
fn numbers_by_key(stored: &[kinesis_support::Stored]) -> HashMap<String, Vec<u64>> {
    let mut by_key: HashMap<String, Vec<u64>> = HashMap::new();
    for record in stored {
        let value: serde_json::Value = serde_json::from_slice(&record.data).unwrap();
        by_key
            .entry(record.partition_key.clone())
            .or_default()
            .push(value["n"].as_u64().unwrap());
    }
    by_key
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_events_reach_kinesis_none_missing() {
    const TOTAL: u64 = 20_000;
    let kinesalite = Kinesalite::start();
    let client = kinesalite.client();
    create_stream(&client, "twenty-k", 4).await;
    let server = SseServer::always(Response::stream(numbered_body(TOTAL, 50)));
    let (output, _state) = run_into_kinesis(
        server.url("/s"),
        "twenty-k",
        kinesalite.endpoint(),
        &["--partition-key", "json:/k"],
    )
    .await;
    assert!(output.status.success(), "{}", stderr_of(&output));
    let numbers = sorted_numbers(&read_stream(&client, "twenty-k").await);
    assert_eq!(numbers.len() as u64, TOTAL, "missing or duplicated records");
    assert!(numbers.iter().copied().eq(0..TOTAL));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kinesis_client_goes_through_the_configured_proxy() {
    const TOTAL: u64 = 500;
    let kinesalite = Kinesalite::start();
    let client = kinesalite.client();
    create_stream(&client, "proxied", 1).await;
    let server = SseServer::always(Response::stream(numbered_body(TOTAL, 5)));
    let proxy = TestProxy::forwarding();
    // Both the SSE request and the Kinesis client go through the proxy.
    let (mut command, _state) = kinesis_command(
        &server.url("/s"),
        "proxied",
        &kinesalite.endpoint(),
        &["--once", "--proxy", &proxy.url(), "--no-proxy", "localhost"],
    );
    let output =
        tokio::task::spawn_blocking(move || run_with_limit(&mut command, Duration::from_secs(300)))
            .await
            .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let numbers = sorted_numbers(&read_stream(&client, "proxied").await);
    assert!(numbers.iter().copied().eq(0..TOTAL), "{numbers:?}");
    let kinesis_address = kinesalite
        .endpoint()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let through_proxy: Vec<_> = proxy
        .requests()
        .into_iter()
        .map(|r| r.request_line)
        .collect();
    assert!(
        through_proxy
            .iter()
            .any(|line| line.starts_with(&format!("POST http://{kinesis_address}/"))),
        "the proxy saw no Kinesis request: {through_proxy:?}"
    );
    assert!(
        through_proxy
            .iter()
            .any(|line| line.starts_with(&format!("GET http://{}/s", server.address()))),
        "the proxy did not carry the SSE request too: {through_proxy:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_writes_to_another_stream_only_when_it_is_allowed() {
    let kinesalite = Kinesalite::start();
    let client = kinesalite.client();
    create_stream(&client, "main", 1).await;
    create_stream(&client, "side", 1).await;
    let server = SseServer::always(Response::text("data: {\"n\":1}\n\ndata: {\"n\":2}\n\n"));
    let routing = ["--filter", "json-match", "--filter-config", "stream=side"];

    let mut allowed = routing.to_vec();
    allowed.extend(["--allow-stream", "side"]);
    let (output, _state) =
        run_into_kinesis(server.url("/s"), "main", kinesalite.endpoint(), &allowed).await;
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(read_stream(&client, "side").await.len(), 2);
    assert!(read_stream(&client, "main").await.is_empty());

    let dead = tempfile::tempdir().unwrap();
    let dead_arg = format!("file:{}", dead.path().display());
    let mut refused = routing.to_vec();
    refused.extend(["--dead-letter", &dead_arg]);
    let (output, _state) =
        run_into_kinesis(server.url("/s"), "main", kinesalite.endpoint(), &refused).await;
    assert!(output.status.success(), "{}", stderr_of(&output));
    let letters = dead_letters(dead.path());
    assert_eq!(letters.len(), 2, "{letters:?}");
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(reason.contains("--allow-stream side"), "{reason}");
    assert_eq!(
        read_stream(&client, "side").await.len(),
        2,
        "nothing more reached side"
    );
    assert!(read_stream(&client, "main").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_loses_nothing_and_ordered_mode_never_inverts_a_key() {
    // One shard, so that 1000 records/s is well below what the pipeline offers.
    const TOTAL: u64 = 6_000;
    let faults = ChaosConfig {
        throttle: true,
        p_record_fail: 0.01,
        p_lost_ack: 0.02,
        lost_ack_every: 7,
        seed: 42,
        ..ChaosConfig::default()
    };
    let kinesis = ProxiedStream::start("chaos", 1, faults).await;
    let (client, proxy) = (&kinesis.client, &kinesis.proxy);
    let server = SseServer::always(Response::stream(numbered_body(TOTAL, 500)));
    let (output, _state) = run_into_kinesis(
        server.url("/s"),
        "chaos",
        proxy.endpoint(),
        &[
            "--ordered",
            "--partition-key",
            "json:/k",
            "--linger-ms",
            "20",
        ],
    )
    .await;
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    let counters: &Counters = &proxy.counters;
    let lost_acks = Counters::get(&counters.lost_ack_records);
    assert!(
        Counters::get(&counters.throttled_records) > 0,
        "the run should have been throttled"
    );
    assert!(
        Counters::get(&counters.internal_failures) > 0,
        "records should have failed"
    );
    assert!(lost_acks > 0, "acknowledgements should have been lost");

    let stored = read_stream(client, "chaos").await;
    let by_key = numbers_by_key(&stored);
    let mut distinct: Vec<u64> = by_key.values().flatten().copied().collect();
    let total_stored = distinct.len() as u64;
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.iter().copied().eq(0..TOTAL), "a record is missing");
    let duplicates = total_stored - TOTAL;
    assert!(
        duplicates <= lost_acks,
        "{duplicates} duplicates but only {lost_acks} lost acknowledgements"
    );
    // Per key, the first occurrences (a lost acknowledgement repeats a record) must rise.
    let mut inversions = 0;
    for ns in by_key.values() {
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<u64> = ns.iter().copied().filter(|n| seen.insert(*n)).collect();
        inversions += firsts.windows(2).filter(|w| w[1] < w[0]).count();
    }
    assert_eq!(inversions, 0, "per-key order inversions in --ordered mode");
    eprintln!(
        "chaos: {duplicates} duplicates from {lost_acks} records with lost acknowledgements, 0 missing, 0 inversions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_two_mib_event_becomes_a_dead_letter_and_its_neighbours_are_delivered() {
    let kinesalite = Kinesalite::start();
    let client = kinesalite.client();
    create_stream(&client, "big", 1).await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let body = format!("id: 1\ndata: before\n\nid: 2\ndata: {huge}\n\nid: 3\ndata: after\n\n");
    let steps = body
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Step::Bytes(c.to_vec()))
        .collect();
    let server = SseServer::always(Response::stream(steps));
    let dead = tempfile::tempdir().unwrap();
    let dead_arg = format!("file:{}", dead.path().display());
    let (output, _state) = run_into_kinesis(
        server.url("/s"),
        "big",
        kinesalite.endpoint(),
        &["--dead-letter", &dead_arg],
    )
    .await;
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stored = read_stream(&client, "big").await;
    let data: Vec<&[u8]> = stored.iter().map(|r| &r.data[..]).collect();
    assert_eq!(data, vec![&b"before"[..], &b"after"[..]]);
    let letters = dead_letters(dead.path());
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0]["kind"], "record");
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(reason.contains("exceeds"), "{reason}");
    assert!(
        stderr_of(&output).contains("dead_letters=1"),
        "{}",
        stderr_of(&output)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_stream_is_a_clear_error() {
    let kinesalite = Kinesalite::start();
    let server = SseServer::always(Response::text("data: x\n\n"));
    let (output, _state) = run_into_kinesis(
        server.url("/s"),
        "no-such-stream",
        kinesalite.endpoint(),
        &[],
    )
    .await;
    assert_eq!(output.status.code(), Some(1));
    let stderr = stderr_of(&output);
    let message = stderr.lines().last().unwrap_or_default();
    assert!(
        message.contains("Kinesis stream \"no-such-stream\" not found"),
        "{stderr}"
    );
    assert_eq!(server.connections(), 0, "it connected to the source first");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_own_test_properties_run_unchanged() {
    let kinesalite = Kinesalite::start();
    let client = kinesalite.client();
    create_stream(&client, "seed-stream", 1).await;
    let server = SseServer::always(Response::text(
        "event: message\ndata: kept\n\nevent: log\ndata: dropped\n\n",
    ));
    let state = tempfile::tempdir().unwrap();
    let properties = state.path().join("application-properties.json");
    let json = serde_json::json!([
        {"PropertyGroupId": "SSESourceProperties", "PropertyMap": {
            "url": server.url("/s"), "headers": "testheader|testvalue|testheader2|testvalue2",
            "types": "message", "readTimeoutMS": "0", "reportMessagesReceivedMS": "5000"}},
        {"PropertyGroupId": "OutputStreamProperties", "PropertyMap": {"DefaultStream": "seed-stream"}},
        {"PropertyGroupId": "ProducerConfigProperties", "PropertyMap": {"AggregationEnabled": "false", "aws.region": "us-east-1"}}
    ]);
    std::fs::write(&properties, json.to_string()).unwrap();
    let mut command = sse_ingest();
    command
        .args([
            "run",
            "--once",
            "--endpoint-url",
            &kinesalite.endpoint(),
            "--properties",
        ])
        .arg(&properties);
    command
        .env("AWS_ACCESS_KEY_ID", "local")
        .env("AWS_SECRET_ACCESS_KEY", "local");
    isolated(&mut command, state.path());
    let output =
        tokio::task::spawn_blocking(move || run_with_limit(&mut command, Duration::from_secs(120)))
            .await
            .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    let stored = read_stream(&client, "seed-stream").await;
    let data: Vec<&[u8]> = stored.iter().map(|r| &r.data[..]).collect();
    assert_eq!(data, vec![&b"kept"[..]]);
    let request = &server.requests()[0];
    assert_eq!(request.header("testheader"), Some("testvalue"));
    assert_eq!(request.header("testheader2"), Some("testvalue2"));
    assert!(
        stderr_of(&output).contains("readTimeoutMS 0"),
        "the choice is logged once"
    );
}

/// The event number of a record's JSON data.
fn number_in(data: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(data).unwrap()["n"]
        .as_u64()
        .unwrap()
}

/// The event numbers of dead-lettered records.
fn dead_numbers(letters: &[serde_json::Value]) -> Vec<u64> {
    letters
        .iter()
        .map(|letter| {
            let data = base64::engine::general_purpose::STANDARD
                .decode(letter["data_base64"].as_str().unwrap())
                .unwrap();
            number_in(&data)
        })
        .collect()
}

/// Per key, how many records stand behind a later one of the same key.
fn inversions(by_key: &HashMap<String, Vec<u64>>) -> usize {
    by_key
        .values()
        .map(|ns| ns.windows(2).filter(|w| w[1] < w[0]).count())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_run_into_a_throttled_stream_drains_every_record_and_exits_zero() {
    // The stream is read in a moment (the buffer holds it all); the shard takes 500 records
    // a second, so the end-of-stream drain lasts about 20 s, ten times the shutdown timeout,
    // which bounds only stops on a signal.
    const TOTAL: u64 = 10_000;
    let kinesis = ProxiedStream::start("throttled", 1, ChaosConfig::throttled_at(500.0)).await;
    let (client, proxy) = (&kinesis.client, &kinesis.proxy);
    let server = SseServer::always(Response::stream(numbered_body(TOTAL, 500)));
    let started = Instant::now();
    let (output, _state) = run_into_kinesis(
        server.url("/s"),
        "throttled",
        proxy.endpoint(),
        &[
            "--ordered",
            "--partition-key",
            "json:/k",
            "--shutdown-timeout-ms",
            "2000",
        ],
    )
    .await;
    let took = started.elapsed();
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("end of stream: delivering what is buffered"),
        "{stderr}"
    );
    let throttled = Counters::get(&proxy.counters.throttled_records);
    assert!(throttled > 0, "the stream was never throttled");
    let stored = read_stream(client, "throttled").await;
    let by_key = numbers_by_key(&stored);
    let numbers = sorted_numbers(&stored);
    assert_eq!(numbers.len() as u64, TOTAL, "missing or duplicated records");
    assert!(numbers.iter().copied().eq(0..TOTAL), "a record is missing");
    assert_eq!(inversions(&by_key), 0, "per-key order inversions");
    assert_eq!(summary_field(&stderr, "dead_letters"), 0);
    eprintln!(
        "throttled drain: {TOTAL} records in {took:?}, {throttled} throttled answers, \
         {} PutRecords requests, 0 dead letters",
        Counters::get(&proxy.counters.put_requests)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_stalls_ends_soon_after_its_bound_with_every_event_stored_or_dead_lettered_once()
 {
    const TOTAL: u64 = 10_000;
    const STALL: Duration = Duration::from_secs(3);
    let kinesis = ProxiedStream::start("stalling", 1, ChaosConfig::throttled_at(500.0)).await;
    let (client, proxy) = (&kinesis.client, &kinesis.proxy);
    let server = SseServer::always(Response::stream(numbered_body(TOTAL, 500)));
    let dead = tempfile::tempdir().unwrap();
    let dead_arg = format!("file:{}", dead.path().display());
    let stall_arg = STALL.as_millis().to_string();
    let (mut command, _state) = kinesis_command(
        &server.url("/s"),
        "stalling",
        &proxy.endpoint(),
        &[
            "--once",
            "--ordered",
            "--partition-key",
            "json:/k",
            "--dead-letter",
            &dead_arg,
            "--drain-stall-timeout-ms",
            &stall_arg,
        ],
    );
    let running = tokio::task::spawn_blocking(move || support::WithAdmin::start(&mut command))
        .await
        .unwrap();
    // Mid-drain: the stream has ended and Kinesis has taken some records, far from all.
    let running = tokio::task::spawn_blocking(move || {
        running.wait_for_log(
            "end of stream: delivering what is buffered",
            Duration::from_secs(120),
        );
        let acked = "sse_ingest_kinesis_records_acked_total{pipeline=\"default\"}";
        running.wait_for_metric(acked, 1000.0, Duration::from_secs(60));
        running
    })
    .await
    .unwrap();
    proxy.stop_answering();
    let silent_since = Instant::now();
    let (status, stderr) =
        tokio::task::spawn_blocking(move || running.finish(Duration::from_secs(120)))
            .await
            .unwrap();
    let after = silent_since.elapsed();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the drain stalled"), "{stderr}");
    assert!(
        after < STALL + Duration::from_secs(7),
        "the run ended {after:?} after Kinesis went silent, with a {STALL:?} stall bound"
    );
    let unanswered = Counters::get(&proxy.counters.unanswered);
    assert!(
        unanswered > 0,
        "no request went unanswered: the test shows nothing"
    );

    let stored: Vec<u64> = read_stream(client, "stalling")
        .await
        .iter()
        .map(|record| number_in(&record.data))
        .collect();
    let letters = dead_letters(dead.path());
    assert!(!letters.is_empty(), "nothing was dead-lettered: {stderr}");
    for letter in &letters {
        let reason = letter["reason"].as_str().unwrap();
        assert!(reason.contains("the drain stalled"), "{reason}");
    }
    let dead_lettered = dead_numbers(&letters);
    let mut every: Vec<u64> = stored.iter().chain(&dead_lettered).copied().collect();
    every.sort_unstable();
    assert_eq!(
        every.len() as u64,
        TOTAL,
        "{} stored + {} dead letters",
        stored.len(),
        dead_lettered.len()
    );
    assert!(
        every.iter().copied().eq(0..TOTAL),
        "an event is missing, or stored and dead-lettered both"
    );
    assert_eq!(
        summary_field(&stderr, "dead_letters"),
        dead_lettered.len() as u64
    );
    eprintln!(
        "stalled drain: exit 1 {after:?} after Kinesis went silent (bound {STALL:?}); \
         {} stored + {} dead letters = {TOTAL}; {} throttled answers, {unanswered} unanswered requests",
        stored.len(),
        dead_lettered.len(),
        Counters::get(&proxy.counters.throttled_records)
    );
}

/// What a run stopped by SIGTERM left behind.
struct Stopped {
    output: Output,
    /// From the signal to the exit.
    stopping: Duration,
    stored: Vec<kinesis_support::Stored>,
    dead_letters: Vec<serde_json::Value>,
    /// PutRecords requests awaiting Kinesis when the signal went.
    in_flight_at_signal: u64,
}

/// Streams an endless body into a one-shard stream through the fault proxy configured
/// by `chaos`, sends SIGTERM after 1 s, and collects what the run left behind.
async fn stop_while_streaming(stream: &str, chaos: ChaosConfig, shutdown_ms: &str) -> Stopped {
    let kinesis = ProxiedStream::start(stream, 1, chaos).await;
    let (client, proxy) = (&kinesis.client, &kinesis.proxy);
    let server = SseServer::always(Response::stream(endless_body()));
    let dead = tempfile::tempdir().unwrap();
    let dead_arg = format!("file:{}", dead.path().display());
    let (mut command, _state) = kinesis_command(
        &server.url("/s"),
        stream,
        &proxy.endpoint(),
        &[
            "--dead-letter",
            &dead_arg,
            "--shutdown-timeout-ms",
            shutdown_ms,
        ],
    );
    // Signal once Kinesis has been asked to write something.
    let counters = std::sync::Arc::clone(&proxy.counters);
    let (output, stopping, in_flight_at_signal) = tokio::task::spawn_blocking(move || {
        let mut in_flight = 0;
        let (output, stopping) = terminate_when(
            &mut command,
            || {
                in_flight = counters
                    .concurrent
                    .load(std::sync::atomic::Ordering::SeqCst);
                counters
                    .put_requests
                    .load(std::sync::atomic::Ordering::SeqCst)
                    > 0
            },
            Duration::from_secs(60),
        );
        (output, stopping, in_flight)
    })
    .await
    .unwrap();
    Stopped {
        output,
        stopping,
        in_flight_at_signal,
        stored: read_stream(client, stream).await,
        dead_letters: dead_letters(dead.path()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_what_kinesis_has_not_acknowledged_yet_and_exits_zero() {
    // Every PutRecords takes 1.5 s, so at the signal (after 1 s) nothing has been
    // acknowledged: everything read is still buffered or in flight.
    let slow = ChaosConfig::slow(Duration::from_millis(1500));
    let stopped = stop_while_streaming("stopping", slow, "30000").await;
    let stderr = stderr_of(&stopped.output);
    assert_eq!(stopped.output.status.code(), Some(0), "{stderr}");
    let stopping = stopped.stopping;
    assert!(
        stopping < Duration::from_secs(20),
        "stopping took {stopping:?}"
    );
    assert!(
        stopped.in_flight_at_signal > 0,
        "nothing was in flight at the signal: the test shows nothing"
    );
    let received = summary_field(&stderr, "events_received");
    assert!(received > 0, "{stderr}");
    assert_eq!(summary_field(&stderr, "records_written"), received);
    assert_eq!(summary_field(&stderr, "dead_letters"), 0);
    let numbers = sorted_numbers(&stopped.stored);
    assert!(
        numbers.iter().copied().eq(0..received),
        "the stream holds {} records, not 0..{received}",
        numbers.len()
    );
    assert!(stopped.dead_letters.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_kinesis_refusing_everything_dead_letters_the_rest_and_exits_one() {
    let chaos = ChaosConfig::refusing_everything();
    let stopped = stop_while_streaming("refusing", chaos, "1000").await;
    let stderr = stderr_of(&stopped.output);
    assert_eq!(stopped.output.status.code(), Some(1), "{stderr}");
    let stopping = stopped.stopping;
    assert!(
        stopping < Duration::from_secs(10),
        "stopping took {stopping:?}"
    );
    assert!(stderr.contains("undelivered"), "{stderr}");
    let received = summary_field(&stderr, "events_received");
    assert!(received > 0, "{stderr}");
    assert!(stopped.stored.is_empty());
    // Nothing lost: every event read is a dead letter, with the reason.
    assert_eq!(stopped.dead_letters.len() as u64, received, "{stderr}");
    assert_eq!(summary_field(&stderr, "dead_letters"), received);
    let mut numbers: Vec<u64> = stopped
        .dead_letters
        .iter()
        .map(|letter| {
            assert!(!letter["reason"].as_str().unwrap().is_empty(), "{letter}");
            let data = base64::engine::general_purpose::STANDARD
                .decode(letter["data_base64"].as_str().unwrap())
                .unwrap();
            serde_json::from_slice::<serde_json::Value>(&data).unwrap()["n"]
                .as_u64()
                .unwrap()
        })
        .collect();
    numbers.sort_unstable();
    assert!(numbers.iter().copied().eq(0..received));
}

/// Resident memory of a process, from `/proc/PID/status`.
fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_stream_makes_the_source_stop_reading_and_memory_stays_flat_and_metrics_show_it() {
    // 100 MB of events offered as fast as TCP takes them; Kinesis answers one request of
    // at most 100 records a second, about 100 KB/s.
    let event = format!("data: {{\"pad\":\"{}\"}}\n\n", "x".repeat(1000));
    let body: Vec<Step> = event
        .repeat(100_000)
        .into_bytes()
        .chunks(64 * 1024)
        .map(|c| Step::Bytes(c.to_vec()))
        .collect();
    let server = SseServer::always(Response::stream(body));
    let kinesis =
        ProxiedStream::start("slow-sink", 1, ChaosConfig::slow(Duration::from_secs(1))).await;
    let proxy = &kinesis.proxy;
    let (mut command, _state) = kinesis_command(
        &server.url("/s"),
        "slow-sink",
        &proxy.endpoint(),
        &[
            "--max-in-flight",
            "1",
            "--max-records-per-request",
            "100",
            "--buffer-max-records",
            "1000",
            "--partition-key",
            "random",
        ],
    );
    let running = tokio::task::spawn_blocking(move || support::WithAdmin::start(&mut command))
        .await
        .unwrap();
    let (admin_port, pid) = (running.port, running.child.id());
    // The steady state: the buffer is full and the sink has answered a request.
    let running = tokio::task::spawn_blocking(move || {
        let full = "sse_ingest_kinesis_buffered_records{pipeline=\"default\"}";
        running.wait_for_metric(full, 1000.0, Duration::from_secs(60));
        let asked = "sse_ingest_kinesis_requests_total{pipeline=\"default\"}";
        running.wait_for_metric(asked, 1.0, Duration::from_secs(60));
        running
    })
    .await
    .unwrap();
    let (sent_early, resident_early) = (server.body_bytes_sent(), resident_bytes(pid));
    // The observation window itself: what the source reads and holds while it lasts.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (sent_late, resident_late) = (server.body_bytes_sent(), resident_bytes(pid));
    let metrics =
        tokio::task::spawn_blocking(move || http_request(admin_port, "GET", "/metrics", b""))
            .await
            .unwrap();
    running.kill();
    let (status, metrics) = metrics.expect("the admin API answers");
    assert_eq!(status, 200);
    // The full buffer and the requests are visible while it happens.
    let value = |name: &str| -> u64 {
        let prefix = format!("sse_ingest_{name}{{pipeline=\"default\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{metrics}"))
    };
    assert!(value("kinesis_buffered_records") > 0, "{metrics}");
    assert!(value("kinesis_requests_total") >= 3, "{metrics}");
    // Each answered request has its latency in the histogram (the slow sink: about 1 s).
    assert!(
        value("kinesis_request_duration_seconds_count") >= 1,
        "{metrics}"
    );
    assert!(
        value("events_received_total") > value("records_written_total"),
        "{metrics}"
    );

    // Without backpressure the whole 100 MB would be read (and held) within a second.
    assert!(
        sent_late < 30 * 1024 * 1024,
        "the source kept reading: {sent_late} bytes sent"
    );
    // Over 3 s the sink takes ~300 records (~300 KB); the source may read only about that.
    assert!(
        sent_late - sent_early < 8 * 1024 * 1024,
        "read {} bytes in 3 s while the sink took about 300 KB",
        sent_late - sent_early
    );
    assert!(
        resident_late < resident_early + 16 * 1024 * 1024,
        "memory grew from {resident_early} to {resident_late} bytes"
    );
    eprintln!(
        "slow sink: {sent_early} then {sent_late} bytes sent; resident {} then {} MiB",
        resident_early >> 20,
        resident_late >> 20
    );
}
