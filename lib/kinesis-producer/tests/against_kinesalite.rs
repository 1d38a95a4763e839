//! The producer against a real Kinesis API server (kinesalite on 127.0.0.1), directly or
//! through the fault-injecting proxy. Needs Node.js and `scripts/setup.sh` (npm ci).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kinesis_producer::aws_sdk_kinesis::Client;
use kinesis_producer::{
    BatchTicket, Producer, ProducerError, ProducerRecord, client_for_local, hex_sha256,
};
use support::chaos::{ChaosConfig, Counters};
use support::{
    Kinesalite, ProxiedStream, audit, create_stream, delete_stream, id_of, producer_through,
    quick_config, read_stream, record,
};

/// Submits `per_key` records for each of `keys` keys in calls of `call_size` records, keys
/// interleaved so that consecutive records of a key often share a request. Returns what was
/// sent per key and the tickets.
async fn submit_many(
    producer: &Producer,
    keys: usize,
    per_key: u64,
    pad: usize,
    call_size: usize,
    run: usize,
) -> (HashMap<String, Vec<u64>>, Vec<BatchTicket>) {
    let mut sent: HashMap<String, Vec<u64>> = HashMap::new();
    let mut all = Vec::new();
    // `run` consecutive records of the same key, then the next key.
    for round in 0..per_key.div_ceil(run as u64) {
        for k in 0..keys {
            let key = format!("key{k}");
            for i in 0..run as u64 {
                let seq = round * run as u64 + i;
                if seq < per_key {
                    sent.entry(key.clone()).or_default().push(seq);
                    all.push(record(&key, seq, pad));
                }
            }
        }
    }
    let mut tickets = Vec::new();
    let mut it = all.into_iter().peekable();
    while it.peek().is_some() {
        let call: Vec<ProducerRecord> = it.by_ref().take(call_size).collect();
        tickets.push(producer.submit(call).await.unwrap());
    }
    (sent, tickets)
}

/// Sends `submit_many`'s load through `producer`, requires every record to be acknowledged
/// (none dead-lettered), then reads `stream` back and audits it against what was sent.
async fn deliver_and_audit(
    producer: &Producer,
    client: &Client,
    stream: &str,
    (keys, per_key, pad, call_size, run): (usize, u64, usize, usize, usize),
) -> support::Audit {
    let (sent, tickets) = submit_many(producer, keys, per_key, pad, call_size, run).await;
    let (acked, dead) = outcomes(tickets).await;
    let total = keys * per_key as usize;
    assert_eq!((acked, dead.len()), (total, 0), "{dead:?}");
    audit(&read_stream(client, stream).await, &sent)
}

async fn outcomes(tickets: Vec<BatchTicket>) -> (usize, Vec<kinesis_producer::DeadLetter>) {
    let mut acked = 0;
    let mut dead = Vec::new();
    for t in tickets {
        let o = t.await.unwrap();
        acked += o.acked;
        dead.extend(o.dead_letters);
    }
    (acked, dead)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_thousand_records_arrive_complete_and_in_key_order() {
    let k = Kinesalite::start();
    let client = k.client();
    create_stream(&client, "twenty", 4).await;
    let mut config = quick_config("twenty");
    config.ordered = true;
    let producer = Producer::new(client.clone(), config).await.unwrap();

    let a = deliver_and_audit(&producer, &client, "twenty", (500, 40, 100, 250, 2)).await;
    assert_eq!(a.stored, 20_000);
    assert_eq!((a.missing, a.duplicates, a.inversions), (0, 0, 0), "{a:?}");
    let s = producer.stats().snapshot();
    assert_eq!(s.records_acked, 20_000);
    assert_eq!(
        (s.buffered_records, s.buffered_bytes, s.in_flight_requests),
        (0, 0, 0)
    );
    let report = producer.close(Duration::from_secs(5)).await.unwrap();
    assert!(report.undelivered.is_empty());
}

fn chaos(seed: u64, p_record_fail: f64) -> ChaosConfig {
    ChaosConfig {
        throttle: true,
        p_record_fail,
        p_request_fail: 0.02,
        p_lost_ack: 0.04,
        request_fail_every: 23,
        lost_ack_every: 13,
        seed,
        ..ChaosConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_loses_nothing_and_duplicates_only_lost_acks() {
    let kinesis = ProxiedStream::start("chaos", 2, chaos(7, 0.01)).await;
    let (client, proxy) = (&kinesis.client, &kinesis.proxy);
    // Smaller requests: more of them, so every kind of fault happens.
    let mut config = quick_config("chaos");
    config.max_records_per_request = 100;
    let producer = producer_through(proxy, config).await;

    let a = deliver_and_audit(&producer, client, "chaos", (100, 60, 200, 500, 1)).await;
    let c = &proxy.counters;
    let lost = Counters::get(&c.lost_ack_records);
    eprintln!(
        "chaos: {} requests, {} throttled, {} internal failures, {} request failures, \
         {} lost acks covering {lost} records; stored {} with {} duplicates; producer {:?}",
        Counters::get(&c.put_requests),
        Counters::get(&c.throttled_records),
        Counters::get(&c.internal_failures),
        Counters::get(&c.request_failures),
        Counters::get(&c.lost_ack_requests),
        a.stored,
        a.duplicates,
        producer.stats().snapshot(),
    );
    // The chaos happened...
    assert!(Counters::get(&c.throttled_records) > 0);
    assert!(Counters::get(&c.internal_failures) > 0);
    assert!(Counters::get(&c.request_failures) > 0);
    assert!(lost > 0);
    // ...and lost nothing; every duplicate is a record whose acknowledgement was lost.
    assert_eq!(a.missing, 0);
    assert!(
        a.duplicates as u64 <= lost,
        "{} duplicates > {lost} lost acks",
        a.duplicates
    );
    let lost_data = c.lost_ack_data.lock().unwrap();
    for (key, seq) in &a.duplicated_ids {
        let in_lost = lost_data.iter().any(|d| id_of(d) == (key.clone(), *seq));
        assert!(
            in_lost,
            "{key}:{seq} duplicated without a lost acknowledgement"
        );
    }
    let s = producer.stats().snapshot();
    assert_eq!((s.records_acked, s.dead_lettered), (6000, 0));
    assert!(s.retried_records > 0 && s.throttled_records > 0 && s.failed_requests > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_mode_never_inverts_a_key_under_chaos() {
    // One shard, so that the load is enough for throttling.
    let kinesis = ProxiedStream::start("ordered", 1, chaos(11, 0.05)).await;
    let (client, proxy) = (&kinesis.client, &kinesis.proxy);
    let mut config = quick_config("ordered");
    config.ordered = true;
    let producer = producer_through(proxy, config).await;

    // Runs of 2 records per key: without the hold-back, a failed record and a successful
    // later one of the same key would often share a request. 1000 keys, so that requests are
    // large enough to be throttled.
    let a = deliver_and_audit(&producer, client, "ordered", (1000, 4, 100, 500, 2)).await;
    let c = &proxy.counters;
    eprintln!(
        "ordered chaos: {} internal failures, {} throttled, {} request failures, {} lost acks; \
         stored {}, {} missing, {} duplicates, {} inversions",
        Counters::get(&c.internal_failures),
        Counters::get(&c.throttled_records),
        Counters::get(&c.request_failures),
        Counters::get(&c.lost_ack_records),
        a.stored,
        a.missing,
        a.duplicates,
        a.inversions
    );
    assert!(Counters::get(&c.internal_failures) > 0 && Counters::get(&c.lost_ack_records) > 0);
    assert!(Counters::get(&c.throttled_records) > 0);
    assert_eq!(a.missing, 0);
    assert_eq!(a.inversions, 0);
    assert!(a.duplicates as u64 <= Counters::get(&c.lost_ack_records));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_record_is_dead_lettered_and_neighbours_delivered() {
    let k = Kinesalite::start();
    let client = k.client();
    create_stream(&client, "sizes", 1).await;
    let producer = Producer::new(client.clone(), quick_config("sizes"))
        .await
        .unwrap();
    assert_eq!(producer.max_record_bytes(), 1024 * 1024);

    let big = ProducerRecord::new(vec![b'x'; 2 * 1024 * 1024], "k");
    // Exactly at the limit: data + key = 1 MiB.
    let mut at_limit = record("k", 2, 0);
    let mut data = at_limit.data.to_vec();
    data.resize(1024 * 1024 - 1, b'y');
    at_limit.data = Bytes::from(data);
    let ticket = producer
        .submit(vec![
            record("k", 1, 10),
            big.clone(),
            at_limit,
            record("k", 3, 10),
        ])
        .await
        .unwrap();
    let outcome = ticket.await.unwrap();
    assert_eq!(outcome.acked, 3);
    assert_eq!(outcome.dead_letters.len(), 1);
    assert_eq!(outcome.dead_letters[0].record, big);
    assert_eq!(
        outcome.dead_letters[0].reason,
        "record of 2097153 bytes exceeds the 1048576-byte limit"
    );

    let stored = read_stream(&client, "sizes").await;
    let ids: Vec<u64> = stored.iter().map(|s| id_of(&s.data).1).collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert_eq!(stored[1].data.len(), 1024 * 1024 - 1);
    assert_eq!(producer.stats().dead_lettered(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_kinesis_rejects_is_split_until_the_bad_record_is_alone() {
    let k = Kinesalite::start();
    let client = k.client();
    create_stream(&client, "split", 1).await;
    // Let through a record that kinesalite (1 MiB of data at most) rejects, to get a
    // ValidationException for the whole request.
    let mut config = quick_config("split");
    config.max_record_bytes = Some(2 * 1024 * 1024);
    let producer = Producer::new(client.clone(), config).await.unwrap();
    let mut records: Vec<ProducerRecord> = (0..9).map(|i| record("k", i, 10)).collect();
    let too_big = ProducerRecord::new(vec![b'z'; 1024 * 1024 + 10], "k");
    records.insert(6, too_big.clone());
    let outcome = producer.submit(records).await.unwrap().await.unwrap();
    assert_eq!(outcome.acked, 9);
    assert_eq!(outcome.dead_letters.len(), 1);
    assert_eq!(outcome.dead_letters[0].record, too_big);
    assert!(
        outcome.dead_letters[0]
            .reason
            .starts_with("rejected by Kinesis: ValidationException"),
        "{}",
        outcome.dead_letters[0].reason
    );
    let stored = read_stream(&client, "split").await;
    let mut ids: Vec<u64> = stored.iter().map(|s| id_of(&s.data).1).collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..9).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_stream_is_a_clear_error() {
    let k = Kinesalite::start();
    let err = Producer::new(k.client(), quick_config("no-such-stream"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, ProducerError::StreamNotFound { .. }),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("\"no-such-stream\" not found"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_stream_dead_letters_records() {
    let k = Kinesalite::start();
    let client = k.client();
    create_stream(&client, "doomed", 1).await;
    create_stream(&client, "other", 1).await;
    let producer = Producer::new(client.clone(), quick_config("doomed"))
        .await
        .unwrap();
    let first = producer.submit(vec![record("k", 0, 10)]).await.unwrap();
    assert_eq!(first.await.unwrap().acked, 1);

    delete_stream(&client, "doomed").await;
    let records: Vec<ProducerRecord> = (1..4).map(|i| record("k", i, 10)).collect();
    let outcome = producer
        .submit(records.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(outcome.acked, 0);
    let dead: Vec<&ProducerRecord> = outcome.dead_letters.iter().map(|d| &d.record).collect();
    assert_eq!(dead, records.iter().collect::<Vec<_>>());
    for d in &outcome.dead_letters {
        assert!(
            d.reason
                .starts_with("stream not found: ResourceNotFoundException"),
            "{}",
            d.reason
        );
    }

    // The producer keeps running: another stream still gets its records.
    let mut elsewhere = record("k", 4, 10);
    elsewhere.stream = Some("other".into());
    let outcome = producer
        .submit(vec![elsewhere])
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!((outcome.acked, outcome.dead_letters.len()), (1, 0));
    assert_eq!(read_stream(&client, "other").await.len(), 1);
    assert_eq!(producer.stats().dead_lettered(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffer_stays_bounded_under_a_slow_endpoint() {
    let kinesis =
        ProxiedStream::start("slow", 2, ChaosConfig::slow(Duration::from_millis(40))).await;
    let proxy = &kinesis.proxy;
    let slow = client_for_local(proxy.endpoint(), "us-east-1");

    // Bounded by bytes: 1 KiB records, a 100 000-byte buffer (97 records).
    let mut config = quick_config("slow");
    config.max_records_per_request = 40;
    config.max_in_flight = 2;
    config.buffer_max_bytes = 100_000;
    config.buffer_max_records = 10_000;
    // The buffer must hold at least one record of the largest size.
    config.max_record_bytes = Some(10_000);
    let producer = Producer::new(slow.clone(), config).await.unwrap();
    let record_size = record("k0", 0, 1000).data.len() + 2;
    let mut tickets = Vec::new();
    let mut acked_when_accepted = Vec::new();
    for call in 0..30u64 {
        let records = (0..100).map(|i| record(&format!("k{}", i % 10), call * 100 + i, 1000));
        tickets.push(producer.submit(records.collect()).await.unwrap());
        // `submit` returned, so all but what the buffer holds was acknowledged.
        acked_when_accepted.push((call + 1) * 100 - producer.stats().records_acked());
    }
    let (acked, dead) = outcomes(tickets).await;
    assert_eq!((acked, dead.len()), (3000, 0));
    let s = producer.stats().snapshot();
    let capacity = (100_000 / record_size) as u64;
    assert!(s.buffered_bytes_peak <= 100_000, "{s:?}");
    assert!(s.buffered_records_peak <= capacity, "{s:?}");
    // It did fill up (so submit had to wait)...
    assert!(
        s.buffered_bytes_peak > 100_000 - 2 * record_size as u64,
        "{s:?}"
    );
    // ...and never ran ahead of the acknowledgements by more than the buffer.
    assert!(
        acked_when_accepted.iter().all(|&open| open <= capacity),
        "{acked_when_accepted:?}"
    );

    // Bounded by records: tiny records, a 200-record buffer.
    let mut config = quick_config("slow");
    config.max_records_per_request = 50;
    config.max_in_flight = 2;
    config.buffer_max_records = 200;
    let producer = Producer::new(slow, config).await.unwrap();
    let mut tickets = Vec::new();
    for call in 0..20u64 {
        let records = (0..100).map(|i| record("t", call * 100 + i, 0));
        tickets.push(producer.submit(records.collect()).await.unwrap());
        assert!(producer.stats().buffered_records() <= 200);
    }
    let (acked, _) = outcomes(tickets).await;
    assert_eq!(acked, 2000);
    let s = producer.stats().snapshot();
    assert_eq!(s.buffered_records_peak, 200, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_partition_keys_are_hashed() {
    let k = Kinesalite::start();
    let client = k.client();
    // Not "keys": kinesalite keeps its streams in an array, so names of Array methods break it.
    create_stream(&client, "hashed-keys", 2).await;
    let producer = Producer::new(client.clone(), quick_config("hashed-keys"))
        .await
        .unwrap();
    let long = "é".repeat(300);
    let limit = "ü".repeat(256);
    let mut r1 = ProducerRecord::new(&b"long"[..], long.clone());
    let r2 = ProducerRecord::new(&b"limit"[..], limit.clone());
    let empty = ProducerRecord::new(&b"empty"[..], "");
    r1.explicit_hash_key = None;
    let outcome = producer
        .submit(vec![r1, r2, empty.clone()])
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(outcome.acked, 2);
    assert_eq!(outcome.dead_letters.len(), 1);
    assert_eq!(outcome.dead_letters[0].record, empty);
    assert!(
        outcome.dead_letters[0]
            .reason
            .contains("partition key is empty")
    );

    let stored = read_stream(&client, "hashed-keys").await;
    let by_data: HashMap<&[u8], &str> = stored
        .iter()
        .map(|s| (s.data.as_ref(), s.partition_key.as_str()))
        .collect();
    assert_eq!(by_data[&b"long"[..]], hex_sha256(long.as_bytes()));
    assert_eq!(by_data[&b"limit"[..]], limit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hold_at_most_500_records_and_5_mib() {
    let kinesis = ProxiedStream::start("batches", 2, ChaosConfig::default()).await;
    let (client, proxy) = (&kinesis.client, &kinesis.proxy);
    let mut config = quick_config("batches");
    config.linger = Duration::from_millis(200);
    let producer = producer_through(proxy, config).await;

    let small: Vec<ProducerRecord> = (0..1200).map(|i| record("s", i, 10)).collect();
    assert_eq!(
        producer.submit(small).await.unwrap().await.unwrap().acked,
        1200
    );
    let c = &proxy.counters;
    // 500 + 500 + 200: full batches, and the rest that waited behind them.
    assert_eq!(Counters::get(&c.max_records_per_request), 500);
    assert_eq!(Counters::get(&c.put_requests), 3);

    let big: Vec<ProducerRecord> = (0..12).map(|i| record("b", i, 900 * 1024)).collect();
    assert_eq!(producer.submit(big).await.unwrap().await.unwrap().acked, 12);
    let max = Counters::get(&c.max_request_bytes);
    assert!(max <= 5 * 1024 * 1024, "{max}");
    assert!(
        max > 4 * 1024 * 1024,
        "batches are filled up to the limit: {max}"
    );
    assert_eq!(read_stream(client, "batches").await.len(), 1212);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_batch_waits_for_the_linger_and_close_sends_it_at_once() {
    let k = Kinesalite::start();
    let client = k.client();
    create_stream(&client, "linger", 1).await;
    let mut config = quick_config("linger");
    config.linger = Duration::from_millis(300);
    let producer = Producer::new(client.clone(), config.clone()).await.unwrap();
    let start = Instant::now();
    producer
        .submit(vec![record("k", 0, 1)])
        .await
        .unwrap()
        .await
        .unwrap();
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_millis(1500), "{waited:?}");

    config.linger = Duration::from_secs(30);
    let producer = Producer::new(client.clone(), config).await.unwrap();
    let start = Instant::now();
    let ticket = producer.submit(vec![record("k", 1, 1)]).await.unwrap();
    let report = producer.close(Duration::from_secs(10)).await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!((report.records_acked, report.undelivered.len()), (1, 0));
    assert_eq!(ticket.await.unwrap().acked, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_requests_fly_at_once_but_never_more_than_configured() {
    let kinesis =
        ProxiedStream::start("flight", 2, ChaosConfig::slow(Duration::from_millis(100))).await;
    let proxy = &kinesis.proxy;
    let mut config = quick_config("flight");
    config.max_records_per_request = 10;
    config.max_in_flight = 3;
    let producer = producer_through(proxy, config).await;
    let records: Vec<ProducerRecord> = (0..120).map(|i| record("f", i, 10)).collect();
    let start = Instant::now();
    assert_eq!(
        producer.submit(records).await.unwrap().await.unwrap().acked,
        120
    );
    // 12 requests of 100 ms, 3 at a time: about 400 ms.
    assert!(
        start.elapsed() < Duration::from_millis(1100),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(Counters::get(&proxy.counters.max_concurrent), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_request_times_out_and_is_retried() {
    let kinesis = ProxiedStream::start(
        "hung",
        1,
        ChaosConfig {
            hang_first: 1,
            ..ChaosConfig::default()
        },
    )
    .await;
    let (client, proxy) = (&kinesis.client, &kinesis.proxy);
    let mut config = quick_config("hung");
    config.attempt_timeout = Duration::from_millis(500);
    let producer = producer_through(proxy, config).await;
    let start = Instant::now();
    let outcome = producer
        .submit((0..5).map(|i| record("h", i, 10)).collect())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(outcome.acked, 5);
    assert!(start.elapsed() >= Duration::from_millis(500));
    assert!(start.elapsed() < Duration::from_secs(5));
    let s = producer.stats().snapshot();
    assert_eq!(
        (s.failed_requests, s.requests, s.retried_records),
        (1, 2, 5)
    );
    assert_eq!(read_stream(client, "hung").await.len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_records_are_retried_until_their_deadline_then_dead_lettered() {
    let kinesis = ProxiedStream::start("throttled", 1, ChaosConfig::refusing_everything()).await;
    let proxy = &kinesis.proxy;
    let mut config = quick_config("throttled");
    config.record_deadline = Duration::from_millis(1500);
    config.retry_base = Duration::from_millis(10);
    config.retry_cap = Duration::from_millis(100);
    let producer = producer_through(proxy, config).await;
    let start = Instant::now();
    let records: Vec<ProducerRecord> = (0..3).map(|i| record("t", i, 10)).collect();
    let outcome = producer
        .submit(records.clone())
        .await
        .unwrap()
        .await
        .unwrap();
    let took = start.elapsed();
    assert_eq!(outcome.acked, 0);
    assert_eq!(outcome.dead_letters.len(), 3);
    for (d, r) in outcome.dead_letters.iter().zip(&records) {
        assert_eq!(&d.record, r);
        let attempts: u32 = d
            .reason
            .strip_prefix("deadline passed after ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{}", d.reason));
        // Far more than a small retry budget.
        assert!(attempts >= 10, "{}", d.reason);
        assert!(
            d.reason.contains("ProvisionedThroughputExceededException"),
            "{}",
            d.reason
        );
    }
    assert!(
        took >= Duration::from_millis(1300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let s = producer.stats().snapshot();
    assert_eq!(s.dead_lettered, 3);
    assert!(s.throttled_records >= 30, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_reports_what_could_not_be_delivered_in_time() {
    let kinesis = ProxiedStream::start("closing", 1, ChaosConfig::refusing_everything()).await;
    let proxy = &kinesis.proxy;
    let producer = producer_through(proxy, quick_config("closing")).await;
    let records: Vec<ProducerRecord> = (0..4).map(|i| record("c", i, 10)).collect();
    let ticket = producer.submit(records.clone()).await.unwrap();
    let handle = producer.clone();
    let start = Instant::now();
    let report = producer.close(Duration::from_millis(500)).await.unwrap();
    assert!(start.elapsed() < Duration::from_secs(2));
    let mut undelivered: Vec<ProducerRecord> = report
        .undelivered
        .iter()
        .map(|d| d.record.clone())
        .collect();
    undelivered.sort_by_key(|r| r.data.clone());
    assert_eq!(undelivered, records);
    assert!(
        report.undelivered[0]
            .reason
            .starts_with("shutdown timeout passed")
    );
    assert_eq!(report.dead_lettered, 4);
    let outcome = ticket.await.unwrap();
    assert_eq!(outcome.dead_letters.len(), 4);
    assert!(matches!(
        handle.submit(vec![record("c", 9, 1)]).await,
        Err(ProducerError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drain_by_frees_a_submit_stuck_on_a_full_buffer_at_the_deadline() {
    let kinesis = ProxiedStream::start("draining", 1, ChaosConfig::refusing_everything()).await;
    let (client, proxy) = (&kinesis.client, &kinesis.proxy);
    let mut config = quick_config("draining");
    config.buffer_max_records = 10;
    let producer = producer_through(proxy, config).await;
    // Fills the buffer; nothing is ever acknowledged, so the next call waits for space.
    let first = producer
        .submit((0..10).map(|i| record("d", i, 10)).collect())
        .await
        .unwrap();
    let blocked = {
        let producer = producer.clone();
        tokio::spawn(async move {
            producer
                .submit((10..15).map(|i| record("d", i, 10)).collect())
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!blocked.is_finished(), "the buffer should have been full");

    let start = Instant::now();
    producer.drain_by(tokio::time::Instant::now() + Duration::from_millis(500));
    let second = tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .expect("the waiting submit returns at the deadline")
        .unwrap()
        .unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let second = second.await.unwrap();
    assert_eq!(second.dead_letters.len(), 5);
    assert!(
        second.dead_letters[0]
            .reason
            .contains("shutdown timeout passed"),
        "{}",
        second.dead_letters[0].reason
    );
    let first = first.await.unwrap();
    assert_eq!(first.dead_letters.len(), 10);
    // After the deadline nothing is accepted, and close reports all fifteen.
    let late = producer
        .submit(vec![record("d", 99, 10)])
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(late.dead_letters.len(), 1);
    let report = producer.close(Duration::from_secs(30)).await.unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "close waited for its own timeout"
    );
    assert_eq!(report.undelivered.len(), 16);
    assert!(read_stream(client, "draining").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_into_a_throttled_stream_waits_as_long_as_records_are_acknowledged() {
    // 1500 records into a shard that takes 500 a second: three seconds of drain, twice the
    // stall bound, which holds because records keep being acknowledged.
    let kinesis = ProxiedStream::start("slowly", 1, ChaosConfig::throttled_at(500.0)).await;
    let (client, proxy) = (&kinesis.client, &kinesis.proxy);
    let mut config = quick_config("slowly");
    config.ordered = true;
    let producer = producer_through(proxy, config).await;
    let (sent, tickets) = submit_many(&producer, 50, 30, 10, 100, 1).await;
    let start = Instant::now();
    let report = producer
        .drain_while_progressing(Duration::from_millis(1500))
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(report.undelivered.is_empty(), "{:?}", report.undelivered);
    assert_eq!(report.stalled, None);
    assert_eq!(report.records_acked, 1500);
    let (acked, dead) = outcomes(tickets).await;
    assert_eq!((acked, dead.len()), (1500, 0));
    let throttled = Counters::get(&proxy.counters.throttled_records);
    assert!(throttled > 0, "the stream was never throttled");
    assert!(took > Duration::from_millis(1500), "drained in {took:?}");
    let audit = audit(&read_stream(client, "slowly").await, &sent);
    assert_eq!(
        (audit.missing, audit.duplicates, audit.inversions),
        (0, 0, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_stalls_dead_letters_what_is_left_once_and_says_so() {
    let kinesis = ProxiedStream::start("silent", 1, ChaosConfig::default()).await;
    let (client, proxy) = (&kinesis.client, &kinesis.proxy);
    proxy.stop_answering();
    let producer = producer_through(proxy, quick_config("silent")).await;
    let records: Vec<ProducerRecord> = (0..20).map(|i| record("s", i, 10)).collect();
    let ticket = producer.submit(records.clone()).await.unwrap();
    let start = Instant::now();
    let report = producer
        .drain_while_progressing(Duration::from_millis(500))
        .await
        .unwrap();
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(report.stalled, Some(Duration::from_millis(500)));
    assert_eq!(report.undelivered.len(), 20);
    assert!(
        report.undelivered[0]
            .reason
            .starts_with("the drain stalled"),
        "{}",
        report.undelivered[0].reason
    );
    let outcome = ticket.await.unwrap();
    assert_eq!((outcome.acked, outcome.dead_letters.len()), (0, 20));
    assert!(Counters::get(&proxy.counters.unanswered) > 0);
    assert!(read_stream(client, "silent").await.is_empty());
}
