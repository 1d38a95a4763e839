//! What aggregation saves: PutRecords requests, Kinesis records and PUT payload units (25 KiB,
//! at least one per Kinesis record) for 1 KiB events, with and without `aggregate`, read from
//! the producer's own counters after delivering the events into kinesalite (a 4-shard
//! stream, 1,000 keys), and scaled to a million events.
//!
//! `cargo bench -p kinesis-producer --bench aggregation` (`BENCH_EVENTS`, default 100,000;
//! kinesalite must be installed: `scripts/setup.sh --tests`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use kinesis_producer::{Producer, ProducerConfig, ProducerRecord};
use support::{Kinesalite, create_stream};

const RECORD_BYTES: usize = 1024;
const KEYS: usize = 1000;
const SHARDS: i32 = 4;

fn main() {
    let events: u64 = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let kinesalite = Kinesalite::start();
        let client = kinesalite.client();
        println!(
            "{events} events of {RECORD_BYTES} bytes, {KEYS} keys, {SHARDS} shards (kinesalite); \
             figures per million events are scaled by {}",
            1_000_000 / events.max(1)
        );
        for aggregate in [false, true] {
            let stream = if aggregate { "bench-aggregated" } else { "bench-plain" };
            create_stream(&client, stream, SHARDS).await;
            let mut config = ProducerConfig::new(stream);
            config.aggregate = aggregate;
            let producer = Producer::new(client.clone(), config).await.unwrap();
            let payload = Bytes::from(vec![b'x'; RECORD_BYTES]);
            let keys: Vec<String> = (0..KEYS).map(|k| format!("key-{k}")).collect();
            let started = Instant::now();
            let mut tickets = Vec::new();
            let mut n = 0u64;
            while n < events {
                let call = (events - n).min(500);
                let records = (n..n + call)
                    .map(|i| ProducerRecord::new(payload.clone(), keys[i as usize % KEYS].clone()))
                    .collect();
                tickets.push(producer.submit(records).await.unwrap());
                n += call;
            }
            for t in tickets {
                let outcome = t.await.unwrap();
                assert!(outcome.dead_letters.is_empty(), "{:?}", outcome.dead_letters[0].reason);
            }
            let took = started.elapsed();
            let s = producer.stats().snapshot();
            producer.close(Duration::from_secs(30)).await.unwrap();
            assert_eq!(s.records_acked, events);
            let kinesis_records = s.aggregated_records + (s.records_acked - s.aggregated_user_records);
            let scale = 1_000_000.0 / events as f64;
            println!(
                "{}: {} PutRecords requests, {kinesis_records} Kinesis records, {} payload units \
                 ({:.1} user records per aggregate) in {:.1} s; per million events: {:.0} requests, \
                 {:.0} payload units",
                if aggregate { "aggregated" } else { "plain     " },
                s.requests,
                s.payload_units,
                if s.aggregated_records == 0 {
                    0.0
                } else {
                    s.aggregated_user_records as f64 / s.aggregated_records as f64
                },
                took.as_secs_f64(),
                s.requests as f64 * scale,
                s.payload_units as f64 * scale,
            );
        }
    });
}
