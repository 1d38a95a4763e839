//! Throughput and CPU cost of the producer, from `submit` to acknowledgement, with 1 KiB
//! records and 4 requests in flight:
//!
//! - against an ack-only endpoint (a child process that answers every PutRecords with
//!   success and stores nothing), so that the producer's own cost (with the SDK's
//!   serialisation and SigV4 signing) is what is measured;
//! - against kinesalite (skipped when it is not installed: run `scripts/setup.sh`).
//!
//! CPU time is this process's user + system time from `/proc/self/stat` (the endpoint runs
//! in another process and is not counted). A run of the SDK alone (PutRecords calls with
//! ready-made entries, no producer) comes first, so the producer's own cost is the
//! difference. Run with `cargo bench -p kinesis-producer`: `producer` uses the system
//! allocator, `producer_mimalloc` mimalloc.
//! `BENCH_RECORDS` overrides the number of records sent to the ack-only endpoint, and
//! `BENCH_ONLY=sdk,unordered,ordered,kinesalite` picks parts, `BENCH_BUFFER_RECORDS` sets
//! `buffer_max_records` (default 10 000), and `BENCH_ACK_PORT` points at an ack-only endpoint
//! started separately.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use kinesis_producer::{Producer, ProducerConfig, ProducerRecord, client_for_local};

const ACK_SERVER_ENV: &str = "KINESIS_PRODUCER_BENCH_ACK_SERVER";
const RECORD_BYTES: usize = 1024;
const KEYS: usize = 1000;
/// Distinct payloads, each its own allocation like a real record's; reused in turn. (Slices
/// of one buffer would share one reference count between all threads, which costs more
/// than everything else here.)
const POOL: usize = 16 * 1024;

fn payloads() -> Vec<Bytes> {
    (0..POOL)
        .map(|i| Bytes::from(vec![b'a' + (i % 26) as u8; RECORD_BYTES]))
        .collect()
}
/// Linux reports process times in these units (USER_HZ), whatever the kernel's HZ.
const TICKS_PER_SECOND: f64 = 100.0;

pub fn main(allocator: &str) {
    if std::env::var_os(ACK_SERVER_ENV).is_some() {
        return ack_server();
    }
    let ack_records: usize = std::env::var("BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        println!(
            "kinesis-producer ({allocator} allocator): {RECORD_BYTES}-byte records, {KEYS} keys, \
             500 per request, 4 in flight"
        );
        // `BENCH_ACK_PORT`: use an ack-only endpoint started separately (run this program
        // with KINESIS_PRODUCER_BENCH_ACK_SERVER=1), e.g. to count only this process's
        // instructions with `perf stat`.
        let external: Option<u16> = std::env::var("BENCH_ACK_PORT")
            .ok()
            .and_then(|p| p.parse().ok());
        let ack = if external.is_some() {
            None
        } else {
            Some(AckServer::start())
        };
        let port = external
            .or(ack.as_ref().map(|a| a.port))
            .unwrap_or_default();
        let endpoint = format!("http://127.0.0.1:{port}");
        if selected("sdk") {
            sdk_baseline(&endpoint, ack_records).await;
        }
        if selected("unordered") {
            measure(
                "ack-only endpoint, unordered",
                &endpoint,
                "bench",
                false,
                ack_records,
            )
            .await;
        }
        if selected("ordered") {
            measure(
                "ack-only endpoint, ordered",
                &endpoint,
                "bench",
                true,
                ack_records,
            )
            .await;
        }
        if let Some(ack) = ack {
            println!(
                "  (the ack-only endpoint itself used {:.1} s of CPU in its own process)",
                cpu_seconds_of(&format!("/proc/{}/stat", ack.child.id()))
            );
        }

        if !selected("kinesalite") {
            return;
        }
        match Kinesalite::start() {
            Some(k) => {
                let endpoint = format!("http://127.0.0.1:{}", k.port);
                let client = client_for_local(&endpoint, "us-east-1");
                client
                    .create_stream()
                    .stream_name("bench")
                    .shard_count(4)
                    .send()
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(200)).await;
                measure("kinesalite, unordered", &endpoint, "bench", false, 40_000).await;
            }
            None => println!("kinesalite: not installed (run scripts/setup.sh); skipped"),
        }
    });
}

/// `BENCH_ONLY=a,b` runs only the parts named (sdk, unordered, ordered, kinesalite).
fn selected(part: &str) -> bool {
    std::env::var("BENCH_ONLY").map_or(true, |only| only.split(',').any(|p| p == part))
}

async fn measure(label: &str, endpoint: &str, stream: &str, ordered: bool, records: usize) {
    let client = client_for_local(endpoint, "us-east-1");
    let mut config = ProducerConfig::new(stream);
    config.max_in_flight = 4;
    config.ordered = ordered;
    if let Some(n) = std::env::var("BENCH_BUFFER_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        config.buffer_max_records = n;
    }
    let producer = Producer::new(client, config).await.unwrap();
    let payload = payloads();
    let keys: Vec<String> = (0..KEYS).map(|k| format!("partition-key-{k}")).collect();

    // Warm up connections and allocations.
    send(&producer, &payload, &keys, records.min(20_000) / 10).await;
    let cpu0 = cpu_seconds_of("/proc/self/stat");
    let t0 = Instant::now();
    send(&producer, &payload, &keys, records).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds_of("/proc/self/stat") - cpu0;
    let s = producer.stats().snapshot();
    println!(
        "{label}: {records} records in {wall:.2} s = {:.0} records/s; CPU {cpu:.2} s = {:.2} µs per record \
         ({} requests, {} retried records)",
        records as f64 / wall,
        cpu * 1e6 / records as f64,
        s.requests,
        s.retried_records
    );
    producer.close(Duration::from_secs(30)).await.unwrap();
}

/// The SDK alone, for comparison: 4 tasks calling PutRecords with 500 ready-made entries at
/// a time, no producer. The difference to the producer's figure is the producer's own cost.
async fn sdk_baseline(endpoint: &str, records: usize) {
    use kinesis_producer::aws_sdk_kinesis::primitives::Blob;
    use kinesis_producer::aws_sdk_kinesis::types::PutRecordsRequestEntry;
    let client = client_for_local(endpoint, "us-east-1");
    let payload = Arc::new(payloads());
    let keys: Vec<String> = (0..KEYS).map(|k| format!("partition-key-{k}")).collect();
    let run = |n: usize| {
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let (client, payload, keys) = (client.clone(), Arc::clone(&payload), keys.clone());
                tokio::spawn(async move {
                    for call in (0..n / 500).filter(|c| c % 4 == t) {
                        let entries = (call * 500..call * 500 + 500)
                            .map(|j| {
                                PutRecordsRequestEntry::builder()
                                    .data(Blob::from_maybe_shared(payload[j % POOL].clone()))
                                    .partition_key(keys[j % keys.len()].clone())
                                    .build()
                                    .unwrap()
                            })
                            .collect();
                        let out = client
                            .put_records()
                            .stream_name("bench")
                            .set_records(Some(entries))
                            .send()
                            .await
                            .unwrap();
                        assert_eq!(out.failed_record_count(), Some(0));
                    }
                })
            })
            .collect();
        async move {
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    run(20_000).await;
    let cpu0 = cpu_seconds_of("/proc/self/stat");
    let t0 = Instant::now();
    run(records).await;
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds_of("/proc/self/stat") - cpu0;
    println!(
        "ack-only endpoint, SDK alone (no producer): {records} records in {wall:.2} s = {:.0} records/s; \
         CPU {cpu:.2} s = {:.2} µs per record",
        records as f64 / wall,
        cpu * 1e6 / records as f64,
    );
}

/// Submits `n` records in calls of 500 and waits for every acknowledgement.
async fn send(producer: &Producer, payload: &[Bytes], keys: &[String], n: usize) {
    let mut tickets = Vec::with_capacity(n / 500 + 1);
    let mut i = 0;
    while i < n {
        let call = (n - i).min(500);
        let records = (i..i + call)
            .map(|j| ProducerRecord::new(payload[j % POOL].clone(), keys[j % keys.len()].clone()))
            .collect();
        tickets.push(producer.submit(records).await.unwrap());
        i += call;
    }
    for t in tickets {
        let o = t.await.unwrap();
        assert!(o.dead_letters.is_empty(), "{:?}", o.dead_letters[0].reason);
    }
}

/// User + system CPU seconds from a `/proc/PID/stat` file.
fn cpu_seconds_of(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command name: state is field 3, utime 14 and stime 15.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / TICKS_PER_SECOND
}

struct AckServer {
    child: Child,
    port: u16,
}

impl AckServer {
    /// Runs this same program as the endpoint, in its own process.
    fn start() -> Self {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(ACK_SERVER_ENV, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap();
        Self { child, port }
    }
}

impl Drop for AckServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Kinesalite {
    child: Child,
    port: u16,
}

impl Kinesalite {
    fn start() -> Option<Self> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/kinesalite");
        if !dir.join("node_modules/kinesalite").is_dir() {
            return None;
        }
        let mut child = Command::new("node")
            .arg(dir.join("start.js"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take()?)
            .read_line(&mut line)
            .ok()?;
        let port = line.trim().parse().ok()?;
        Some(Self { child, port })
    }
}

impl Drop for Kinesalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The endpoint process: answers DescribeStreamSummary with an active 4-shard stream and
/// every PutRecords with success for all its records, on 127.0.0.1. Exits when its stdin
/// closes (the benchmark ended or died).
fn ack_server() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut out = std::io::stdout();
        writeln!(out, "{port}").unwrap();
        out.flush().unwrap();
        std::thread::spawn(|| {
            use std::io::Read as _;
            let mut buf = [0u8; 16];
            while matches!(std::io::stdin().read(&mut buf), Ok(n) if n > 0) {}
            std::process::exit(0);
        });
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let target = req
                            .headers()
                            .get("x-amz-target")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_owned();
                        let body = req.into_body().collect().await?.to_bytes();
                        let answer = if target.ends_with(".PutRecords") {
                            let n = memchr::memmem::find_iter(&body, b"\"PartitionKey\"").count();
                            put_records_success(n)
                        } else {
                            DESCRIBE.to_owned()
                        };
                        Ok::<_, hyper::Error>(
                            Response::builder()
                                .header("content-type", "application/x-amz-json-1.1")
                                .header("x-amzn-requestid", "ack-only")
                                .body(Full::new(Bytes::from(answer)))
                                .unwrap(),
                        )
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
}

const DESCRIBE: &str = r#"{"StreamDescriptionSummary":{"StreamName":"bench","StreamARN":"arn:aws:kinesis:us-east-1:000000000000:stream/bench","StreamStatus":"ACTIVE","RetentionPeriodHours":24,"StreamCreationTimestamp":1700000000,"EnhancedMonitoring":[{"ShardLevelMetrics":[]}],"EncryptionType":"NONE","OpenShardCount":4}}"#;

fn put_records_success(n: usize) -> String {
    const ENTRY: &str = r#"{"SequenceNumber":"49590338271490256608559692538361571095921575989136588898","ShardId":"shardId-000000000000"}"#;
    let mut s = String::with_capacity(64 + n * (ENTRY.len() + 1));
    s.push_str(r#"{"FailedRecordCount":0,"Records":["#);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        s.push_str(ENTRY);
    }
    s.push_str(r#"],"EncryptionType":"NONE"}"#);
    s
}
