//! A Kinesis Data Streams producer (PutRecords) that loses nothing.
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use kinesis_producer::{Producer, ProducerConfig, ProducerRecord, client_from_env};
//!
//! let client = client_from_env(None, None, &Default::default()).await?;
//! let producer = Producer::new(client, ProducerConfig::new("events")).await?;
//! // Waits while the buffer is full: that is the backpressure.
//! let ticket = producer.submit(vec![ProducerRecord::new(&b"{}"[..], "key")]).await?;
//! let outcome = ticket.await?; // every record acknowledged or dead-lettered
//! assert_eq!(outcome.acked + outcome.dead_letters.len(), 1);
//! let report = producer.close(std::time::Duration::from_secs(30)).await?;
//! # let _ = report;
//! # Ok(())
//! # }
//! ```
//!
//! # What it guarantees
//!
//! - **Every record is settled exactly once**: acknowledged by Kinesis, or returned as a
//!   [`DeadLetter`] with the reason, in the [`BatchOutcome`] of the `submit` call that passed
//!   it. Nothing is dropped silently, and dead letters do not stop the producer.
//! - **At least once, not exactly once**: a request whose acknowledgement is lost (timeout,
//!   connection reset, 500 after the write) is sent again, so Kinesis may hold a record
//!   twice. Put a unique id in the data and de-duplicate downstream. The SDK's own retries are
//!   off: they would re-send whole requests, duplicating even the records that succeeded
//!   within a partial failure; the producer re-sends only what failed.
//! - **Bounded memory**: the buffer holds at most `buffer_max_records` records and
//!   `buffer_max_bytes` bytes (data + partition key) from acceptance to acknowledgement,
//!   including records in flight and waiting to be retried. `submit` waits for space.
//! - **Retries until a deadline**: per-record failures (ProvisionedThroughputExceededException,
//!   InternalFailure) and whole-request failures (5xx, throttling, timeouts, connection
//!   errors) are retried with exponential backoff and jitter until the record's
//!   `record_deadline`, then dead-lettered with the last error. A request that Kinesis
//!   rejects as invalid is split in halves until the record at fault is alone; that record is
//!   dead-lettered and the others are delivered. ResourceNotFoundException (the stream does
//!   not exist or was deleted) dead-letters the request's records at once.
//! - **Batching**: at most `max_records_per_request` (500) records and `max_request_bytes`
//!   (5 MiB of data + keys) per request; a batch goes when it is full or after `linger`.
//!   Up to `max_in_flight` requests are in flight at once, over all streams. The request
//!   body is written by the producer (`body.rs`) straight from the buffered records and
//!   handed to the SDK before signing; the SDK signs, sends and parses the response.
//! - **Shutdown**: [`Producer::drain_by`] starts a deadline while other tasks may still be
//!   submitting; [`Producer::close`] stops accepting and reports what was left undelivered.
//!
//! # Record rules
//!
//! - Size: data + partition key (UTF-8 bytes) above the limit (1 MiB, or the stream's
//!   `MaxRecordSizeInKiB`) → dead letter `record of N bytes exceeds the M-byte limit`.
//! - Partition keys longer than 256 characters (UTF-16 code units, as Kinesis counts) are
//!   replaced by the hex SHA-256 of their UTF-8 bytes: still deterministic, so a given key
//!   keeps its shard and its order. An empty partition key is invalid in Kinesis; such a
//!   record is dead-lettered (a fixed replacement key would silently pile those records onto
//!   one shard).
//! - An explicit hash key must be a decimal integer in `[0, 2^128-1]`, else dead letter.
//!
//! # Ordering
//!
//! Kinesis keeps order per shard for records it has accepted, but PutRecords does not
//! preserve order across failures: when an entry fails and a later entry with the same key
//! succeeds, re-sending the failed one puts it behind.
//!
//! - **Unordered (default)**: records are sent in the order they were accepted, and failed
//!   records are re-sent ahead of new ones, but a retried record can land after later records
//!   with the same partition key, and two requests in flight at once can interleave on a
//!   shard. So order per key holds only while nothing fails and `max_in_flight` is 1. Use it
//!   when consumers sort or do not care (e.g. they order by a timestamp or event id in the
//!   data).
//! - **Ordered (`ordered: true`)**: no record overtakes an earlier accepted record with the
//!   same stream and partition key, whatever fails and however many requests are in flight:
//!   each key has at most one record outstanding (queued, in flight or waiting to be retried),
//!   and the next record of that key is held back until it is acknowledged or
//!   dead-lettered. A duplicate from a lost acknowledgement can still appear after later
//!   records of its key, but its first copy is always in place, so a consumer that drops
//!   repeated ids sees the keys in order. A dead-lettered record is skipped, not waited for.
//!   Cost: a key advances one record per round trip, so throughput comes from having many
//!   keys in flight at once (up to 500 per request).
//!
//! # Aggregation
//!
//! With `aggregate: true` user records are packed into KPL-format aggregated records
//! (`aggregate.rs`: magic, protobuf `AggregatedRecord`, MD5), one aggregate per predicted
//! shard (ListShards' hash-key ranges, `shards.rs`), each bounded by the record limit; its
//! partition key is its first user record's, so it lands on the predicted shard. A user
//! record too large to share goes alone, plain. Everything above holds per user record:
//! a failed aggregate retries (and in the end dead-letters) each user record it held, a
//! ticket resolves when each is settled, ordered mode still keeps one record of a key
//! outstanding (so an aggregate holds at most one record of each key; throughput comes from
//! many keys, as without aggregation). A put whose record lands on another shard than
//! predicted (a resharding) makes the producer read the shard map again; until a map is
//! read the stream's records wait, and when ListShards fails they go plain. Only consumers
//! that de-aggregate (the KCL, Firehose, Lambda with the aggregation library) read the user
//! records; others see the aggregated bytes.
//!
//! # Tests and benchmark
//!
//! The integration tests run against kinesalite (a local Kinesis API server started from
//! `tests/kinesalite` at the workspace root; `scripts/setup.sh` installs it with npm) and a
//! fault-injecting proxy written in Rust in `tests/support`, all on 127.0.0.1. The
//! benchmark (`cargo bench -p kinesis-producer`) prints records/s and CPU time per record
//! against an ack-only endpoint and kinesalite, next to the SDK alone.
//!
//! # Logs
//!
//! `tracing` events: request failures at `warn` (throttling at `debug`), dead letters at
//! `warn`, partial failures at `debug`. Credentials never appear in them.

mod aggregate;
mod body;
mod client;
mod config;
mod dispatcher;
mod error;
mod producer;
mod record;
mod shards;
mod stats;
mod transient;

pub use aws_sdk_kinesis;
pub use client::{
    ATTEMPT_TIMEOUT, CONNECT_TIMEOUT, ClientError, HttpSettings, OPERATION_TIMEOUT,
    client_for_local, client_from_env, sdk_config_from_env,
};
pub use config::{
    DEFAULT_MAX_RECORD_BYTES, DEFAULT_MAX_REQUEST_BYTES, KINESIS_MAX_RECORDS_PER_REQUEST,
    ProducerConfig,
};
pub use error::ProducerError;
pub use producer::{CloseReport, Producer, StreamSummary, describe_stream};
pub use record::{
    BatchOutcome, BatchTicket, DeadLetter, MAX_PARTITION_KEY_CHARS, ProducerRecord, hex_sha256,
};
pub use stats::{LATENCY_BUCKETS, LatencySnapshot, ProducerStats, StatsSnapshot};
pub use transient::is_transient;
