//! Reads `--aggregate` output back as a consumer would: the Kinesis records of a stream,
//! de-aggregated by aws-kinesis-agg (the KPL format's Node.js library, installed in
//! `tests/kinesis-agg` by `scripts/setup.sh --tests`), checksums verified. An independent
//! implementation: a bug shared by our encoder and our own decoder cannot hide here.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::Engine as _;

/// A Kinesis record as read from a stream.
#[derive(Debug, Clone, Copy)]
pub struct KinesisRecord<'a> {
    pub shard: &'a str,
    pub partition_key: &'a str,
    pub data: &'a [u8],
}

/// One user record as the library hands it to a consumer.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// The shard the Kinesis record holding it was stored on.
    pub shard: String,
    /// The Kinesis record's own partition key.
    pub kinesis_partition_key: String,
    /// The user record's partition key.
    pub partition_key: String,
    pub data: Vec<u8>,
    /// Whether it came out of an aggregated record (else it was stored plain).
    pub aggregated: bool,
}

/// Every user record of `stored` (in its order: shard by shard, each in sequence order).
pub fn deaggregate<'a>(stored: impl IntoIterator<Item = KinesisRecord<'a>>) -> Vec<UserRecord> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/kinesis-agg");
    assert!(
        dir.join("node_modules/aws-kinesis-agg").is_dir(),
        "aws-kinesis-agg is not installed: run scripts/setup.sh --tests (npm ci in {})",
        dir.display()
    );
    let input: Vec<serde_json::Value> = stored
        .into_iter()
        .enumerate()
        .map(|(n, r)| {
            serde_json::json!({
                "shard": r.shard,
                "partitionKey": r.partition_key,
                "data": base64::engine::general_purpose::STANDARD.encode(r.data),
                "sequenceNumber": n.to_string(),
            })
        })
        .collect();
    let mut child = Command::new("node")
        .arg(dir.join("deaggregate.js"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node (Node.js is needed for aws-kinesis-agg): {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let text = serde_json::to_vec(&input).unwrap();
    // Written from a thread: the script answers while it reads, and a full pipe both ways
    // would block.
    let writer = std::thread::spawn(move || stdin.write_all(&text));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "de-aggregation failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            UserRecord {
                shard: v["shard"].as_str().unwrap().to_owned(),
                kinesis_partition_key: v["kinesisPartitionKey"].as_str().unwrap().to_owned(),
                partition_key: v["partitionKey"].as_str().unwrap().to_owned(),
                data: base64::engine::general_purpose::STANDARD
                    .decode(v["data"].as_str().unwrap())
                    .unwrap(),
                aggregated: v["aggregated"].as_bool().unwrap(),
            }
        })
        .collect()
}
