//! A fault-injecting HTTP proxy for Kinesis JSON 1.1 traffic, between the producer and
//! kinesalite (which enforces no per-shard throughput). For PutRecords it can:
//!
//! - throttle per shard at 1000 records/s and 1 MiB/s like provisioned Kinesis (or at a
//!   lower record rate, `throttle_records_per_second`), answering
//!   ProvisionedThroughputExceededException per record inside a 200;
//! - fail random records with InternalFailure;
//! - fail whole requests with a 500 without forwarding them;
//! - lose acknowledgements: forward, then answer 500 or drop the connection, so the client
//!   retries records that were written (and the proxy counts them);
//! - delay every request (a slow endpoint), or hang the first few;
//! - stop answering on the test's word ([`ChaosProxy::stop_answering`]): every later
//!   PutRecords is read and never forwarded nor answered, an endpoint that went silent.
//!
//! Failed records are not forwarded, so kinesalite stores exactly what the responses say
//! succeeded. Other calls pass through. Listens on 127.0.0.1 only.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Default)]
pub struct ChaosConfig {
    /// Per-shard token buckets: 1000 records/s and 1 MiB/s.
    pub throttle: bool,
    /// Per-shard token buckets at this many records/s (and 1 MiB/s), a shard slower than
    /// Kinesis's 1000; implies `throttle`.
    pub throttle_records_per_second: Option<f64>,
    /// Every record is throttled (the stream is hopelessly over its limit).
    pub throttle_everything: bool,
    /// Probability of InternalFailure for each record.
    pub p_record_fail: f64,
    /// Probability of a whole-request 500 (not forwarded).
    pub p_request_fail: f64,
    /// Probability of a lost acknowledgement (forwarded, then 500 or a dropped connection).
    pub p_lost_ack: f64,
    /// Also fail every this many-th PutRecords request with a 500 (0 = never), so that a
    /// test does not depend on luck for its faults to happen.
    pub request_fail_every: u64,
    /// Also lose the acknowledgement of every this many-th PutRecords request (0 = never).
    pub lost_ack_every: u64,
    /// Added before each PutRecords is handled.
    pub delay: Duration,
    /// The first this many PutRecords requests get no answer for a minute (not forwarded).
    pub hang_first: usize,
    /// ListShards is refused with AccessDeniedException, as for a role without the grant.
    pub refuse_list_shards: bool,
    pub seed: u64,
}

impl ChaosConfig {
    /// Every record is throttled: a stream hopelessly over its limit.
    pub fn refusing_everything() -> Self {
        Self {
            throttle_everything: true,
            ..Self::default()
        }
    }

    /// Every shard takes `records_per_second` and throttles the rest.
    pub fn throttled_at(records_per_second: f64) -> Self {
        Self {
            throttle_records_per_second: Some(records_per_second),
            ..Self::default()
        }
    }

    /// Every PutRecords waits `delay` before it is handled: a slow endpoint.
    pub fn slow(delay: Duration) -> Self {
        Self {
            delay,
            ..Self::default()
        }
    }
}

#[derive(Debug, Default)]
pub struct Counters {
    pub put_requests: AtomicU64,
    pub throttled_records: AtomicU64,
    pub internal_failures: AtomicU64,
    pub request_failures: AtomicU64,
    pub lost_ack_requests: AtomicU64,
    /// Records written by kinesalite whose acknowledgement the client never saw.
    pub lost_ack_records: AtomicU64,
    pub max_records_per_request: AtomicU64,
    /// Largest sum of data + partition key bytes in one request.
    pub max_request_bytes: AtomicU64,
    pub concurrent: AtomicU64,
    pub max_concurrent: AtomicU64,
    pub hung: AtomicUsize,
    /// ListShards calls refused (`refuse_list_shards`).
    pub list_shards_refused: AtomicU64,
    /// PutRecords requests left unanswered after [`ChaosProxy::stop_answering`].
    pub unanswered: AtomicU64,
    /// Data of the records whose acknowledgement was lost.
    pub lost_ack_data: Mutex<HashSet<Bytes>>,
}

impl Counters {
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// An open shard: first and last hash key, shard id.
type ShardRange = (u128, u128, String);

struct Bucket {
    records: f64,
    bytes: f64,
    at: Instant,
}

struct State {
    upstream: u16,
    config: ChaosConfig,
    counters: Arc<Counters>,
    rng: Mutex<Lcg>,
    /// stream -> [(start, end, shard id)] of open shards.
    shard_maps: tokio::sync::Mutex<HashMap<String, Vec<ShardRange>>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    silent: Arc<AtomicBool>,
}

/// A small deterministic generator, so that a seed gives the same faults.
struct Lcg(u64);

impl Lcg {
    fn next_f64(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

pub struct ChaosProxy {
    pub port: u16,
    pub counters: Arc<Counters>,
    silent: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ChaosProxy {
    pub async fn start(upstream: u16, config: ChaosConfig) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let counters = Arc::new(Counters::default());
        let silent = Arc::new(AtomicBool::new(false));
        let state = Arc::new(State {
            silent: Arc::clone(&silent),
            upstream,
            rng: Mutex::new(Lcg(config.seed.wrapping_add(0x9e37_79b9_7f4a_7c15))),
            config,
            counters: Arc::clone(&counters),
            shard_maps: tokio::sync::Mutex::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = Arc::clone(&state);
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let state = Arc::clone(&state);
                        async move { handle(state, req).await }
                    });
                    // A connection dropped on purpose ends here with an error: expected.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            port,
            counters,
            silent,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on every PutRecords is read and left without an answer (not forwarded):
    /// the client sees its attempts time out. Requests already being handled finish.
    pub fn stop_answering(&self) {
        self.silent.store(true, Ordering::SeqCst);
    }
}

type Reply = Response<Full<Bytes>>;

/// The service returns `Err` to make hyper drop the connection without an answer.
#[derive(Debug)]
struct DropConnection;

impl std::fmt::Display for DropConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("chaos: connection dropped after the write")
    }
}

impl std::error::Error for DropConnection {}

fn reply(status: StatusCode, body: Bytes) -> Reply {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "chaos")
        .body(Full::new(body))
        .unwrap()
}

fn error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = json!({"__type": code, "message": message}).to_string();
    reply(status, Bytes::from(body))
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Reply, DropConnection> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await.map_err(|_| DropConnection)?.to_bytes();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "host" | "content-length" | "connection" | "transfer-encoding"
            )
        })
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    if target.ends_with(".PutRecords") {
        let c = &state.counters;
        if state.silent.load(Ordering::SeqCst) {
            c.unanswered.fetch_add(1, Ordering::SeqCst);
            // Held until the client gives up and closes the connection.
            std::future::pending::<()>().await;
        }
        let now = c.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_concurrent.fetch_max(now, Ordering::SeqCst);
        let result = put_records(&state, &headers, body).await;
        c.concurrent.fetch_sub(1, Ordering::SeqCst);
        return result;
    }
    if target.ends_with(".ListShards") && state.config.refuse_list_shards {
        state
            .counters
            .list_shards_refused
            .fetch_add(1, Ordering::SeqCst);
        return Ok(error(
            StatusCode::BAD_REQUEST,
            "AccessDeniedException",
            "not authorized to perform: kinesis:ListShards",
        ));
    }
    let (status, body) = forward(state.upstream, &headers, body).await;
    Ok(reply(status, body))
}

async fn forward(port: u16, headers: &[(String, String)], body: Bytes) -> (StatusCode, Bytes) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method("POST")
        .uri("/")
        .header("host", format!("127.0.0.1:{port}"));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    let resp = sender
        .send_request(req.body(Full::new(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

fn decoded_len(b64: &str) -> usize {
    let pad = b64.bytes().rev().take_while(|&b| b == b'=').count();
    b64.len() / 4 * 3 - pad
}

async fn shard_of(
    state: &State,
    headers: &[(String, String)],
    stream: &str,
    rec: &Value,
) -> Option<String> {
    let hash = match rec.get("ExplicitHashKey").and_then(Value::as_str) {
        Some(h) => h.parse::<u128>().ok()?,
        None => {
            let key = rec["PartitionKey"].as_str()?;
            u128::from_be_bytes(Md5::digest(key.as_bytes()).as_slice().try_into().unwrap())
        }
    };
    let mut maps = state.shard_maps.lock().await;
    if !maps.contains_key(stream) {
        let mut h: Vec<(String, String)> = headers
            .iter()
            .filter(|(k, _)| k != "x-amz-target")
            .cloned()
            .collect();
        h.push(("x-amz-target".into(), "Kinesis_20131202.ListShards".into()));
        let body = json!({"StreamName": stream}).to_string();
        let (status, body) = forward(state.upstream, &h, Bytes::from(body)).await;
        if status != StatusCode::OK {
            return None;
        }
        let v: Value = serde_json::from_slice(&body).unwrap();
        let shards = v["Shards"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| {
                s["SequenceNumberRange"]
                    .get("EndingSequenceNumber")
                    .is_none()
            })
            .map(|s| {
                let r = &s["HashKeyRange"];
                (
                    r["StartingHashKey"].as_str().unwrap().parse().unwrap(),
                    r["EndingHashKey"].as_str().unwrap().parse().unwrap(),
                    s["ShardId"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        maps.insert(stream.to_owned(), shards);
    }
    maps[stream]
        .iter()
        .find(|(lo, hi, _)| *lo <= hash && hash <= *hi)
        .map(|(_, _, id)| id.clone())
}

/// `None` if admitted, else the error code for this record.
async fn admit(
    state: &State,
    headers: &[(String, String)],
    stream: &str,
    rec: &Value,
) -> Option<&'static str> {
    let c = &state.counters;
    let roll = state.rng.lock().unwrap().next_f64();
    if roll < state.config.p_record_fail {
        c.internal_failures.fetch_add(1, Ordering::Relaxed);
        return Some("InternalFailure");
    }
    if state.config.throttle_everything {
        c.throttled_records.fetch_add(1, Ordering::Relaxed);
        return Some("ProvisionedThroughputExceededException");
    }
    let rate = match state.config.throttle_records_per_second {
        Some(rate) => rate,
        None if state.config.throttle => 1000.0,
        None => return None,
    };
    let shard = shard_of(state, headers, stream, rec).await?;
    let size = decoded_len(rec["Data"].as_str().unwrap_or(""))
        + rec["PartitionKey"].as_str().unwrap_or("").len();
    let mut buckets = state.buckets.lock().unwrap();
    let now = Instant::now();
    let b = buckets
        .entry(format!("{stream}/{shard}"))
        .or_insert(Bucket {
            records: rate,
            bytes: 1_048_576.0,
            at: now,
        });
    let dt = now.duration_since(b.at).as_secs_f64();
    b.at = now;
    b.records = (b.records + dt * rate).min(rate);
    b.bytes = (b.bytes + dt * 1_048_576.0).min(1_048_576.0);
    if b.records >= 1.0 && b.bytes >= size as f64 {
        b.records -= 1.0;
        b.bytes -= size as f64;
        None
    } else {
        c.throttled_records.fetch_add(1, Ordering::Relaxed);
        Some("ProvisionedThroughputExceededException")
    }
}

async fn put_records(
    state: &State,
    headers: &[(String, String)],
    body: Bytes,
) -> Result<Reply, DropConnection> {
    let c = &state.counters;
    let number = c.put_requests.fetch_add(1, Ordering::Relaxed) + 1;
    let every = |n: u64| n > 0 && number.is_multiple_of(n);
    if !state.config.delay.is_zero() {
        tokio::time::sleep(state.config.delay).await;
    }
    if c.hung.fetch_add(1, Ordering::SeqCst) < state.config.hang_first {
        tokio::time::sleep(Duration::from_secs(60)).await;
        return Err(DropConnection);
    }
    let req: Value = serde_json::from_slice(&body).unwrap();
    let records = req["Records"].as_array().unwrap();
    let request_bytes: usize = records
        .iter()
        .map(|r| {
            decoded_len(r["Data"].as_str().unwrap()) + r["PartitionKey"].as_str().unwrap().len()
        })
        .sum();
    c.max_records_per_request
        .fetch_max(records.len() as u64, Ordering::Relaxed);
    c.max_request_bytes
        .fetch_max(request_bytes as u64, Ordering::Relaxed);

    let roll = state.rng.lock().unwrap().next_f64();
    if roll < state.config.p_request_fail || every(state.config.request_fail_every) {
        c.request_failures.fetch_add(1, Ordering::Relaxed);
        return Ok(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "chaos: injected request failure",
        ));
    }
    let lost = roll < state.config.p_request_fail + state.config.p_lost_ack
        || every(state.config.lost_ack_every);

    let stream = req["StreamName"].as_str().unwrap_or("").to_owned();
    let mut codes = Vec::with_capacity(records.len());
    for rec in records {
        codes.push(admit(state, headers, &stream, rec).await);
    }
    let forwarded: Vec<Value> = records
        .iter()
        .zip(&codes)
        .filter(|(_, code)| code.is_none())
        .map(|(r, _)| r.clone())
        .collect();
    let mut upstream_results = Vec::new();
    if !forwarded.is_empty() {
        let mut req2 = req.clone();
        req2["Records"] = Value::Array(forwarded.clone());
        let (status, b) = forward(state.upstream, headers, Bytes::from(req2.to_string())).await;
        if status != StatusCode::OK {
            return Ok(reply(status, b));
        }
        let v: Value = serde_json::from_slice(&b).unwrap();
        upstream_results = v["Records"].as_array().unwrap().clone();
    }
    let mut results = upstream_results.into_iter();
    let mut out = Vec::with_capacity(codes.len());
    let mut failed = 0;
    let mut written = Vec::new();
    let mut forwarded = forwarded.into_iter();
    for code in &codes {
        match code {
            None => {
                let r = results.next().unwrap();
                let rec = forwarded.next().unwrap();
                if r.get("ErrorCode").is_some() {
                    failed += 1;
                } else {
                    written.push(rec);
                }
                out.push(r);
            }
            Some(code) => {
                failed += 1;
                out.push(json!({"ErrorCode": code, "ErrorMessage": format!("chaos: {code}")}));
            }
        }
    }
    if lost {
        c.lost_ack_requests.fetch_add(1, Ordering::Relaxed);
        c.lost_ack_records
            .fetch_add(written.len() as u64, Ordering::Relaxed);
        {
            use base64::Engine as _;
            let mut set = c.lost_ack_data.lock().unwrap();
            for rec in &written {
                let data = base64::engine::general_purpose::STANDARD
                    .decode(rec["Data"].as_str().unwrap())
                    .unwrap();
                set.insert(Bytes::from(data));
            }
        }
        // Half of the lost acknowledgements are a 500, half a dropped connection.
        let drop_it = state.rng.lock().unwrap().next_f64() < 0.5;
        if drop_it {
            return Err(DropConnection);
        }
        return Ok(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalFailure",
            "chaos: acknowledgement lost after the write",
        ));
    }
    let body = json!({"FailedRecordCount": failed, "Records": out, "EncryptionType": "NONE"});
    Ok(reply(StatusCode::OK, Bytes::from(body.to_string())))
}
