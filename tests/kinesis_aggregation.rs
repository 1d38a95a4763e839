//! `--aggregate` through the real binary into kinesalite, read back and de-aggregated by
//! aws-kinesis-agg (`support::kpl`), an implementation that shares no code with ours.

use crate::kinesis_support;
use crate::support;

use std::collections::{BTreeSet, HashMap};
use std::process::Output;
use std::time::{Duration, Instant};

use base64::Engine as _;
use kinesis_producer::aws_sdk_kinesis::Client;
use kinesis_producer::aws_sdk_kinesis::types::StreamStatus;
use kinesis_producer::{Producer, ProducerConfig, ProducerRecord};
use kinesis_support::chaos::{ChaosConfig, Counters};
use kinesis_support::{Kinesalite, ProxiedStream, create_stream, read_stream};
use md5::{Digest, Md5};
use support::kpl::{KinesisRecord, UserRecord};
use support::sse_server::{Response, SseServer, Step};
use support::{dead_letters, isolated, run_with_limit, sse_ingest, stderr_of, summary_field};

/// Event `n`: id `n`, data `{"n":n,"k":"key-(n % keys)","pad":"..."}` of about `pad` bytes more.
fn keyed_body(total: u64, keys: u64, pad: usize) -> Vec<Step> {
    let filler = "x".repeat(pad);
    let text: String = (0..total)
        .map(|n| {
            format!(
                "id: {n}\ndata: {{\"n\":{n},\"k\":\"key-{}\",\"pad\":\"{filler}\"}}\n\n",
                n % keys
            )
        })
        .collect();
    text.into_bytes()
        .chunks(32 * 1024)
        .map(|c| Step::Bytes(c.to_vec()))
        .collect()
}

/// `sse-ingest run --once --sink kinesis:STREAM --aggregate` against `endpoint`.
async fn run_aggregating(
    url: String,
    stream: &str,
    endpoint: String,
    extra: &[&str],
) -> (Output, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let mut command = sse_ingest();
    command.args(["run", "--once", "--aggregate", "--url", &url]);
    command.args(["--sink", &format!("kinesis:{stream}")]);
    command.args(["--endpoint-url", &endpoint, "--region", "us-east-1"]);
    command.args(extra);
    support::local_aws_credentials(&mut command);
    isolated(&mut command, state.path());
    let output =
        tokio::task::spawn_blocking(move || run_with_limit(&mut command, Duration::from_secs(300)))
            .await
            .unwrap();
    (output, state)
}

/// The user records of `stored`, de-aggregated by aws-kinesis-agg.
fn deaggregate(stored: &[kinesis_support::Stored]) -> Vec<UserRecord> {
    support::kpl::deaggregate(stored.iter().map(|r| KinesisRecord {
        shard: &r.shard,
        partition_key: &r.partition_key,
        data: &r.data,
    }))
}

/// The `n` of an event's data.
fn number_in(data: &[u8]) -> u64 {
    let value: serde_json::Value = serde_json::from_slice(data).unwrap();
    value["n"].as_u64().unwrap()
}

/// The open shards' hash-key ranges, as ListShards gives them.
async fn shard_ranges(client: &Client, stream: &str) -> Vec<(u128, u128, String)> {
    let answer = client
        .list_shards()
        .stream_name(stream)
        .send()
        .await
        .unwrap();
    answer
        .shards()
        .iter()
        // A shard closed by a resharding takes no records.
        .filter(|s| {
            s.sequence_number_range()
                .is_none_or(|r| r.ending_sequence_number().is_none())
        })
        .map(|s| {
            let range = s.hash_key_range().unwrap();
            (
                range.starting_hash_key().parse().unwrap(),
                range.ending_hash_key().parse().unwrap(),
                s.shard_id().to_owned(),
            )
        })
        .collect()
}

/// The shard Kinesis maps `key` to: the range holding its MD5 as a big-endian integer.
fn shard_of(ranges: &[(u128, u128, String)], key: &str) -> String {
    let hash = u128::from_be_bytes(Md5::digest(key.as_bytes()).into());
    ranges
        .iter()
        .find(|(start, end, _)| (*start..=*end).contains(&hash))
        .map(|(_, _, id)| id.clone())
        .unwrap()
}

/// Event numbers per user partition key, in stream order.
fn numbers_by_key(records: &[UserRecord]) -> HashMap<String, Vec<u64>> {
    let mut by_key: HashMap<String, Vec<u64>> = HashMap::new();
    for r in records {
        by_key
            .entry(r.partition_key.clone())
            .or_default()
            .push(number_in(&r.data));
    }
    by_key
}

/// Checks what every aggregation run must hold: each event once, each user record on the
/// shard its own key maps to. Returns the user records.
async fn read_back(client: &Client, stream: &str, total: u64) -> (usize, Vec<UserRecord>) {
    let stored = read_stream(client, stream).await;
    let users = deaggregate(&stored);
    let mut numbers: Vec<u64> = users.iter().map(|u| number_in(&u.data)).collect();
    numbers.sort_unstable();
    assert_eq!(numbers.len() as u64, total, "missing or repeated events");
    assert!(numbers.iter().copied().eq(0..total), "an event is missing");
    let ranges = shard_ranges(client, stream).await;
    for u in &users {
        assert_eq!(
            u.shard,
            shard_of(&ranges, &u.partition_key),
            "a user record of {} is not on its key's shard",
            u.partition_key
        );
        assert_eq!(
            shard_of(&ranges, &u.kinesis_partition_key),
            u.shard,
            "an aggregate is not on its own key's shard"
        );
    }
    (stored.len(), users)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregated_records_read_back_with_the_kpl_library_hold_every_event_on_its_keys_shard() {
    const TOTAL: u64 = 5_000;
    let kinesalite = Kinesalite::start();
    let client = kinesalite.client();
    create_stream(&client, "agg", 4).await;
    let server = SseServer::always(Response::stream(keyed_body(TOTAL, 40, 200)));
    let (output, _state) = run_aggregating(
        server.url("/s"),
        "agg",
        kinesalite.endpoint(),
        &["--partition-key", "json:/k"],
    )
    .await;
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("read the stream's shard map"), "{stderr}");
    let (kinesis_records, users) = read_back(&client, "agg", TOTAL).await;
    let shards: BTreeSet<&str> = users.iter().map(|u| u.shard.as_str()).collect();
    assert!(shards.len() >= 2, "every key on one shard: {shards:?}");
    let aggregated = users.iter().filter(|u| u.aggregated).count();
    assert_eq!(aggregated as u64, TOTAL, "a small record went plain");
    assert!(
        kinesis_records as u64 <= TOTAL / 20,
        "{kinesis_records} Kinesis records for {TOTAL} events"
    );
    eprintln!(
        "aggregated: {TOTAL} events in {kinesis_records} Kinesis records on {} shards",
        shards.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_aggregation_keeps_every_keys_order() {
    const TOTAL: u64 = 3_000;
    let kinesalite = Kinesalite::start();
    let client = kinesalite.client();
    create_stream(&client, "agg-ordered", 3).await;
    let server = SseServer::always(Response::stream(keyed_body(TOTAL, 24, 50)));
    let (output, _state) = run_aggregating(
        server.url("/s"),
        "agg-ordered",
        kinesalite.endpoint(),
        &[
            "--ordered",
            "--partition-key",
            "json:/k",
            "--max-in-flight",
            "4",
        ],
    )
    .await;
    assert!(output.status.success(), "{}", stderr_of(&output));
    let (kinesis_records, users) = read_back(&client, "agg-ordered", TOTAL).await;
    let by_key = numbers_by_key(&users);
    assert_eq!(by_key.len(), 24);
    for (key, numbers) in &by_key {
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{key} out of order: {numbers:?}"
        );
    }
    assert!(
        (kinesis_records as u64) < TOTAL / 2,
        "{kinesis_records} Kinesis records for {TOTAL} events"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_too_large_to_share_goes_alone_and_one_over_the_limit_is_a_dead_letter() {
    let kinesalite = Kinesalite::start();
    let client = kinesalite.client();
    create_stream(&client, "agg-big", 1).await;
    // With a 64 KiB record limit: event 1 (65,517 bytes with its key) fits alone but beside
    // nothing (an aggregate adds about 70 bytes); 100 KiB never fits.
    let event = |n: u64, pad: usize| {
        format!(
            "id: {n}\ndata: {{\"n\":{n},\"pad\":\"{}\"}}\n\n",
            "x".repeat(pad)
        )
    };
    let body = [
        event(0, 10),
        event(1, 65_500),
        event(2, 10),
        event(3, 100 * 1024),
        event(4, 10),
    ]
    .concat();
    let server = SseServer::always(Response::text(&body));
    let dead = tempfile::tempdir().unwrap();
    let dead_arg = format!("file:{}", dead.path().display());
    let (output, _state) = run_aggregating(
        server.url("/s"),
        "agg-big",
        kinesalite.endpoint(),
        &["--max-record-bytes", "65536", "--dead-letter", &dead_arg],
    )
    .await;
    let stderr = stderr_of(&output);
    assert!(output.status.success(), "{stderr}");
    let users = deaggregate(&read_stream(&client, "agg-big").await);
    let stored: Vec<(u64, bool)> = users
        .iter()
        .map(|u| (number_in(&u.data), u.aggregated))
        .collect();
    assert_eq!(
        stored,
        vec![(0, false), (1, false), (2, true), (4, true)],
        "0 alone (the large one could not join it), 1 alone, 2 and 4 together"
    );
    let letters = dead_letters(dead.path());
    assert_eq!(letters.len(), 1, "{letters:?}");
    let reason = letters[0]["reason"].as_str().unwrap();
    assert!(reason.contains("exceeds the 65536-byte limit"), "{reason}");
    assert_eq!(summary_field(&stderr, "dead_letters"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_aggregate_dead_letters_each_user_record_it_held() {
    const TOTAL: u64 = 300;
    let kinesis = ProxiedStream::start("agg-refused", 2, ChaosConfig::refusing_everything()).await;
    let server = SseServer::always(Response::stream(keyed_body(TOTAL, 10, 20)));
    let dead = tempfile::tempdir().unwrap();
    let dead_arg = format!("file:{}", dead.path().display());
    let (output, _state) = run_aggregating(
        server.url("/s"),
        "agg-refused",
        kinesis.proxy.endpoint(),
        &[
            "--partition-key",
            "json:/k",
            "--record-deadline-ms",
            "1500",
            "--dead-letter",
            &dead_arg,
        ],
    )
    .await;
    let stderr = stderr_of(&output);
    assert!(stderr.contains("read the stream's shard map"), "{stderr}");
    let throttled = Counters::get(&kinesis.proxy.counters.throttled_records);
    let requests = Counters::get(&kinesis.proxy.counters.put_requests);
    assert!(requests > 0, "nothing was sent");
    // Two shards: at most two aggregates a request when every record is aggregated.
    assert!(
        throttled <= 2 * requests,
        "{throttled} Kinesis records refused in {requests} requests: not aggregated"
    );
    let letters = dead_letters(dead.path());
    let mut numbers: Vec<u64> = letters
        .iter()
        .map(|letter| {
            let reason = letter["reason"].as_str().unwrap();
            assert!(reason.contains("deadline passed"), "{reason}");
            let data = base64::engine::general_purpose::STANDARD
                .decode(letter["data_base64"].as_str().unwrap())
                .unwrap();
            number_in(&data)
        })
        .collect();
    numbers.sort_unstable();
    assert!(
        numbers.iter().copied().eq(0..TOTAL),
        "each user record dead-lettered once: {} letters",
        numbers.len()
    );
    assert!(read_stream(&kinesis.client, "agg-refused").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_once_run_with_aggregate_into_a_throttled_stream_drains_every_record_in_order() {
    // The throttled run of kinesis_end_to_end.rs, aggregated: 10,000 `--ordered` events,
    // 500 keys, one shard that takes 500 records a second.
    const TOTAL: u64 = 10_000;
    let kinesis = ProxiedStream::start("agg-throttled", 1, ChaosConfig::throttled_at(500.0)).await;
    let server = SseServer::always(Response::stream(keyed_body(TOTAL, 500, 0)));
    let started = Instant::now();
    let (output, _state) = run_aggregating(
        server.url("/s"),
        "agg-throttled",
        kinesis.proxy.endpoint(),
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
    assert_eq!(summary_field(&stderr, "dead_letters"), 0);
    let (kinesis_records, users) = read_back(&kinesis.client, "agg-throttled", TOTAL).await;
    let by_key = numbers_by_key(&users);
    assert_eq!(by_key.len(), 500);
    for (key, numbers) in &by_key {
        assert!(
            numbers.windows(2).all(|w| w[0] < w[1]),
            "{key} out of order"
        );
    }
    eprintln!(
        "throttled drain with --aggregate: {TOTAL} records in {took:?}, {kinesis_records} \
         Kinesis records, {} throttled answers, {} PutRecords requests, 0 dead letters",
        Counters::get(&kinesis.proxy.counters.throttled_records),
        Counters::get(&kinesis.proxy.counters.put_requests)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_resharding_the_shard_map_is_read_again_and_records_follow_the_new_shards() {
    let kinesalite = Kinesalite::start();
    let client = kinesalite.client();
    create_stream(&client, "agg-split", 1).await;
    let mut config = ProducerConfig::new("agg-split");
    config.aggregate = true;
    config.linger = Duration::from_millis(20);
    let producer = Producer::new(client.clone(), config).await.unwrap();
    let round = |r: u64| -> Vec<ProducerRecord> {
        (0..200u64)
            .map(|n| ProducerRecord::new(format!("{{\"n\":{}}}", r * 200 + n), format!("key-{n}")))
            .collect()
    };
    let deliver = |records: Vec<ProducerRecord>| {
        let producer = producer.clone();
        async move {
            let outcome = producer.submit(records).await.unwrap().await.unwrap();
            assert_eq!((outcome.acked, outcome.dead_letters.len()), (200, 0));
        }
    };
    deliver(round(0)).await;
    assert_eq!(producer.stats().shard_map_reads(), 1);

    // Split the one shard in two halves of the hash-key space.
    let shards = client
        .list_shards()
        .stream_name("agg-split")
        .send()
        .await
        .unwrap();
    let parent = shards.shards()[0].shard_id().to_owned();
    client
        .split_shard()
        .stream_name("agg-split")
        .shard_to_split(&parent)
        .new_starting_hash_key((u128::MAX / 2 + 1).to_string())
        .send()
        .await
        .unwrap();
    let mut active = false;
    for _ in 0..200 {
        let summary = client
            .describe_stream_summary()
            .stream_name("agg-split")
            .send()
            .await
            .unwrap();
        if summary
            .stream_description_summary()
            .unwrap()
            .stream_status()
            == &StreamStatus::Active
        {
            active = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(active, "the split did not finish");

    // The map still names the closed parent: the first aggregates land on a child, which
    // tells the producer to read the map again.
    deliver(round(1)).await;
    assert_eq!(
        producer.stats().shard_map_reads(),
        2,
        "the map was not read again"
    );
    // Until the new map is read the stream's records wait, so these go by the new map.
    deliver(round(2)).await;
    producer.close(Duration::from_secs(10)).await.unwrap();

    let stored = read_stream(&client, "agg-split").await;
    let users = deaggregate(&stored);
    let mut numbers: Vec<u64> = users.iter().map(|u| number_in(&u.data)).collect();
    numbers.sort_unstable();
    assert!(
        numbers.iter().copied().eq(0..600),
        "missing or repeated records"
    );
    let ranges = shard_ranges(&client, "agg-split").await;
    assert_eq!(ranges.len(), 2);
    let late: Vec<&UserRecord> = users.iter().filter(|u| number_in(&u.data) >= 400).collect();
    assert_eq!(late.len(), 200);
    for u in late {
        assert_eq!(
            u.shard,
            shard_of(&ranges, &u.partition_key),
            "{}",
            u.partition_key
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_list_shards_records_go_plain_and_the_failure_is_counted() {
    // A role without the kinesis:ListShards grant: nothing is lost, nothing misplaced.
    let faults = ChaosConfig {
        refuse_list_shards: true,
        ..ChaosConfig::default()
    };
    let kinesis = ProxiedStream::start("agg-denied", 2, faults).await;
    let client = kinesis_producer::client_for_local(kinesis.proxy.endpoint(), "us-east-1");
    let mut config = ProducerConfig::new("agg-denied");
    config.aggregate = true;
    config.linger = Duration::from_millis(20);
    let producer = Producer::new(client, config).await.unwrap();
    let records = (0..300u64)
        .map(|n| ProducerRecord::new(format!("{{\"n\":{n}}}"), format!("key-{}", n % 30)))
        .collect();
    let outcome = producer.submit(records).await.unwrap().await.unwrap();
    assert_eq!((outcome.acked, outcome.dead_letters.len()), (300, 0));
    let stats = producer.stats().snapshot();
    assert!(stats.shard_map_failures >= 1, "{stats:?}");
    assert_eq!(stats.aggregated_records, 0, "{stats:?}");
    assert!(Counters::get(&kinesis.proxy.counters.list_shards_refused) >= 1);
    producer.close(Duration::from_secs(10)).await.unwrap();
    let users = deaggregate(&read_stream(&kinesis.client, "agg-denied").await);
    assert_eq!(users.len(), 300);
    assert!(users.iter().all(|u| !u.aggregated));
    let ranges = shard_ranges(&kinesis.client, "agg-denied").await;
    for u in &users {
        assert_eq!(u.shard, shard_of(&ranges, &u.partition_key));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_chaos_aggregates_lose_nothing_and_ordered_mode_never_inverts_a_key() {
    // Failed aggregates (per-record InternalFailure), lost acknowledgements and throttling:
    // each retried as the user records it held.
    const TOTAL: u64 = 4_000;
    let faults = ChaosConfig {
        throttle: true,
        p_record_fail: 0.05,
        p_lost_ack: 0.02,
        lost_ack_every: 7,
        seed: 7,
        ..ChaosConfig::default()
    };
    let kinesis = ProxiedStream::start("agg-chaos", 2, faults).await;
    let server = SseServer::always(Response::stream(keyed_body(TOTAL, 200, 20)));
    let (output, _state) = run_aggregating(
        server.url("/s"),
        "agg-chaos",
        kinesis.proxy.endpoint(),
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
    assert_eq!(summary_field(&stderr, "dead_letters"), 0);
    let counters: &Counters = &kinesis.proxy.counters;
    assert!(
        Counters::get(&counters.internal_failures) > 0,
        "no aggregate failed"
    );
    assert!(
        Counters::get(&counters.lost_ack_records) > 0,
        "no ack was lost"
    );
    let users = deaggregate(&read_stream(&kinesis.client, "agg-chaos").await);
    let by_key = numbers_by_key(&users);
    let mut distinct: Vec<u64> = by_key.values().flatten().copied().collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert!(distinct.iter().copied().eq(0..TOTAL), "a record is missing");
    let mut inversions = 0;
    for numbers in by_key.values() {
        let mut seen = std::collections::HashSet::new();
        let firsts: Vec<u64> = numbers
            .iter()
            .copied()
            .filter(|n| seen.insert(*n))
            .collect();
        inversions += firsts.windows(2).filter(|w| w[1] < w[0]).count();
    }
    assert_eq!(inversions, 0, "per-key order inversions in --ordered mode");
    assert!(users.iter().any(|u| u.aggregated), "nothing was aggregated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_kill_the_checkpoint_names_no_event_that_is_not_stored() {
    // Each PutRecords takes 300 ms, so aggregates are always in flight; the checkpoint
    // (written every 20 ms) may only follow what Kinesis acknowledged, user record by
    // user record.
    let kinesis =
        ProxiedStream::start("agg-kill", 2, ChaosConfig::slow(Duration::from_millis(300))).await;
    let server = SseServer::always(Response::stream(support::numbered::paced_frames(
        100_000,
        Duration::from_millis(1),
    )));
    let state = tempfile::tempdir().unwrap();
    let mut command = sse_ingest();
    command.args(["run", "--aggregate", "--url", &server.url("/s")]);
    command.args(["--sink", "kinesis:agg-kill", "--region", "us-east-1"]);
    command.args(["--endpoint-url", &kinesis.proxy.endpoint()]);
    command.args(["--checkpoint-interval-ms", "20"]);
    command.stderr(std::process::Stdio::piped());
    support::local_aws_credentials(&mut command);
    isolated(&mut command, state.path());
    let received = "sse_ingest_events_received_total{pipeline=\"default\"}";
    // Blocking waits on the admin API; the proxy's tasks run on the other worker.
    let running = tokio::task::block_in_place(|| {
        let running = support::WithAdmin::start(&mut command);
        running.wait_for_metric(
            "sse_ingest_kinesis_aggregated_records_total{pipeline=\"default\"}",
            4.0,
            Duration::from_secs(60),
        );
        // From now on nothing more is stored, while events keep being read and submitted:
        // a checkpoint that followed submissions instead of acknowledgements would pass
        // what is stored.
        kinesis.proxy.stop_answering();
        // (Each paced event is a batch of its own, and at most 64 batches await Kinesis
        // before the pipeline stops reading.)
        let now = running.metric(received).unwrap_or_default();
        running.wait_for_metric(received, now + 30.0, Duration::from_secs(60));
        running.wait_for_metric(
            "sse_ingest_kinesis_in_flight_requests{pipeline=\"default\"}",
            1.0,
            Duration::from_secs(60),
        );
        let read = running.metric(received).unwrap_or_default() as u64;
        (read, running.kill())
    });
    let (read, running) = running;
    let checkpoint =
        std::fs::read_to_string(state.path().join("pipelines/default/checkpoint.json"))
            .unwrap_or_else(|e| panic!("no checkpoint ({e}): {running}"));
    let checkpoint: serde_json::Value = serde_json::from_str(&checkpoint).unwrap();
    let last: u64 = checkpoint["last_event_id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(last > 0, "{checkpoint}");
    let stored: BTreeSet<u64> = deaggregate(&read_stream(&kinesis.client, "agg-kill").await)
        .iter()
        .map(|u| number_in(&u.data))
        .collect();
    assert!(
        (0..read).any(|n| !stored.contains(&n)),
        "every event read was stored: the test shows nothing"
    );
    let missing: Vec<u64> = (0..=last).filter(|n| !stored.contains(n)).collect();
    assert!(
        missing.is_empty(),
        "the checkpoint names event {last} but {} events up to it are not stored: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
}
