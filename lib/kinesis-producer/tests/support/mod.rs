//! Real servers for the producer's tests: kinesalite (a Kinesis API server, in a child
//! process) and a fault-injecting proxy in front of it.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod chaos;
// The host's tests compile this file and their own support, which holds the same module.
#[allow(clippy::duplicate_mod)]
#[path = "../../../../tests/support/node_server.rs"]
mod node_server;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use kinesis_producer::aws_sdk_kinesis::Client;
use kinesis_producer::aws_sdk_kinesis::types::{ShardIteratorType, StreamStatus};
use kinesis_producer::{Producer, ProducerConfig, ProducerRecord, client_for_local};
use node_server::NodeServer;

/// kinesalite in a child process on 127.0.0.1, killed on drop (see [`NodeServer`]).
pub struct Kinesalite {
    server: NodeServer,
    pub port: u16,
}

/// The workspace root: the nearest ancestor with `tests/kinesalite` (this support
/// module is also compiled into the host's tests, one folder level higher).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .find(|dir| dir.join("tests/kinesalite").is_dir())
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../.."))
}

impl Kinesalite {
    pub fn start() -> Self {
        let server = NodeServer::start(&workspace_root().join("tests/kinesalite"), "kinesalite");
        let port = server.port;
        Self { server, port }
    }

    pub fn endpoint(&self) -> String {
        self.server.endpoint()
    }

    pub fn client(&self) -> Client {
        client_for_local(self.endpoint(), "us-east-1")
    }
}

/// A kinesalite with one ACTIVE stream, and the fault-injecting proxy in front of it.
/// Keep the whole value alive: dropping it stops kinesalite.
pub struct ProxiedStream {
    pub kinesalite: Kinesalite,
    /// Talks to kinesalite directly (to read the stream back).
    pub client: Client,
    pub proxy: chaos::ChaosProxy,
}

impl ProxiedStream {
    pub async fn start(stream: &str, shards: i32, faults: chaos::ChaosConfig) -> Self {
        let kinesalite = Kinesalite::start();
        let client = kinesalite.client();
        create_stream(&client, stream, shards).await;
        let proxy = chaos::ChaosProxy::start(kinesalite.port, faults).await;
        Self {
            kinesalite,
            client,
            proxy,
        }
    }
}

/// A producer that talks to Kinesis through `proxy`.
pub async fn producer_through(proxy: &chaos::ChaosProxy, config: ProducerConfig) -> Producer {
    Producer::new(client_for_local(proxy.endpoint(), "us-east-1"), config)
        .await
        .unwrap()
}

/// Creates a stream and waits until it is ACTIVE.
pub async fn create_stream(client: &Client, name: &str, shards: i32) {
    client
        .create_stream()
        .stream_name(name)
        .shard_count(shards)
        .send()
        .await
        .unwrap();
    for _ in 0..200 {
        let d = client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .unwrap();
        if d.stream_description_summary().unwrap().stream_status() == &StreamStatus::Active {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("stream {name} did not become ACTIVE");
}

/// Deletes a stream and waits until it is gone.
pub async fn delete_stream(client: &Client, name: &str) {
    client
        .delete_stream()
        .stream_name(name)
        .send()
        .await
        .unwrap();
    for _ in 0..200 {
        if client
            .describe_stream_summary()
            .stream_name(name)
            .send()
            .await
            .is_err()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("stream {name} was not deleted");
}

/// A record as stored.
#[derive(Debug, Clone)]
pub struct Stored {
    pub shard: String,
    pub partition_key: String,
    pub data: Bytes,
}

/// Everything in the stream, shard by shard, each shard in sequence order.
pub async fn read_stream(client: &Client, name: &str) -> Vec<Stored> {
    let shards = client.list_shards().stream_name(name).send().await.unwrap();
    let mut out = Vec::new();
    for shard in shards.shards() {
        let mut iterator = client
            .get_shard_iterator()
            .stream_name(name)
            .shard_id(shard.shard_id())
            .shard_iterator_type(ShardIteratorType::TrimHorizon)
            .send()
            .await
            .unwrap()
            .shard_iterator()
            .map(str::to_owned);
        let mut rounds = 0;
        while let Some(it) = iterator {
            rounds += 1;
            assert!(
                rounds < 10_000,
                "GetRecords did not reach the end of the shard"
            );
            let page = client
                .get_records()
                .shard_iterator(it)
                .limit(10_000)
                .send()
                .await
                .unwrap();
            for r in page.records() {
                out.push(Stored {
                    shard: shard.shard_id().to_owned(),
                    partition_key: r.partition_key().unwrap_or_default().to_owned(),
                    data: r.data().clone().into_bytes(),
                });
            }
            if page.records().is_empty() && page.millis_behind_latest() == Some(0) {
                break;
            }
            iterator = page.next_shard_iterator().map(str::to_owned);
        }
    }
    out
}

/// A record whose data names it: `key:seq:` then `pad` bytes of filler.
pub fn record(key: &str, seq: u64, pad: usize) -> ProducerRecord {
    let mut data = format!("{key}:{seq}:").into_bytes();
    data.resize(data.len() + pad, b'x');
    ProducerRecord::new(data, key)
}

/// `(key, seq)` of a record made by [`record`].
pub fn id_of(data: &[u8]) -> (String, u64) {
    let s = std::str::from_utf8(data).unwrap();
    let mut parts = s.splitn(3, ':');
    let key = parts.next().unwrap().to_owned();
    let seq = parts.next().unwrap().parse().unwrap();
    (key, seq)
}

/// Settings that make tests quick: short linger and backoff, a generous attempt timeout (a
/// timed-out attempt that was written would be a duplicate no proxy counted).
pub fn quick_config(stream: &str) -> ProducerConfig {
    let mut c = ProducerConfig::new(stream);
    c.linger = Duration::from_millis(20);
    c.retry_base = Duration::from_millis(20);
    c.retry_cap = Duration::from_millis(400);
    c.attempt_timeout = Duration::from_secs(20);
    c.operation_timeout = Duration::from_secs(20);
    c.record_deadline = Duration::from_secs(60);
    c
}

/// What the stream holds, checked against what was sent: `sent[key]` = seqs in send order.
#[derive(Debug, Default)]
pub struct Audit {
    pub stored: usize,
    pub missing: usize,
    pub duplicates: usize,
    /// Records whose first copy comes before the first copy of an earlier record of its key.
    pub inversions: usize,
    pub duplicated_ids: Vec<(String, u64)>,
}

pub fn audit(stored: &[Stored], sent: &HashMap<String, Vec<u64>>) -> Audit {
    let mut seen: HashMap<(String, u64), usize> = HashMap::new();
    let mut first_order: HashMap<String, Vec<u64>> = HashMap::new();
    for s in stored {
        let id = id_of(&s.data);
        assert_eq!(s.partition_key, id.0, "record stored under another key");
        let n = seen.entry(id.clone()).or_insert(0);
        *n += 1;
        if *n == 1 {
            first_order.entry(id.0).or_default().push(id.1);
        }
    }
    let mut a = Audit {
        stored: stored.len(),
        ..Audit::default()
    };
    for (key, seqs) in sent {
        for seq in seqs {
            match seen.get(&(key.clone(), *seq)) {
                None => a.missing += 1,
                Some(&n) if n > 1 => {
                    a.duplicates += n - 1;
                    a.duplicated_ids.push((key.clone(), *seq));
                }
                Some(_) => {}
            }
        }
        let order = first_order.get(key).cloned().unwrap_or_default();
        let position: HashMap<u64, usize> = seqs.iter().enumerate().map(|(i, s)| (*s, i)).collect();
        let mut highest = None;
        for seq in order {
            let p = position[&seq];
            match highest {
                Some(h) if p < h => a.inversions += 1,
                _ => highest = Some(p),
            }
        }
    }
    a
}
