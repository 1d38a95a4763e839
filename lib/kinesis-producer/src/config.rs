//! What the producer can be told.

use std::time::Duration;

use crate::ProducerError;

/// Kinesis accepts at most this many records in one PutRecords request.
pub const KINESIS_MAX_RECORDS_PER_REQUEST: usize = 500;
/// The request size limit in older documentation and in the local servers (the current API
/// reference says 10 MiB); the default, so that one configuration works everywhere.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// A record's data plus its partition key may be this large unless the stream's
/// `MaxRecordSizeInKiB` says otherwise.
pub const DEFAULT_MAX_RECORD_BYTES: usize = 1024 * 1024;

/// How the producer batches, buffers, retries and orders. Build one with
/// [`ProducerConfig::new`] and change the fields you need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerConfig {
    /// The stream (name, or ARN starting with `arn:`) for records whose `stream` is `None`.
    /// No default. It must exist: [`Producer::new`](crate::Producer::new) checks it once.
    pub stream: String,
    /// Records per PutRecords request. Default 500, Kinesis's maximum (1 to 500).
    pub max_records_per_request: usize,
    /// Sum of data + partition key bytes per request. Default 5 MiB. Raised to the record
    /// limit if that is larger, so that every acceptable record fits in a request.
    pub max_request_bytes: usize,
    /// Largest record (data + partition key bytes); larger ones are dead-lettered without
    /// being sent. Default `None`: the default stream's `MaxRecordSizeInKiB` as reported by
    /// DescribeStreamSummary, or 1 MiB when the stream does not report it. The limit applies to
    /// records for other streams too (a stricter stream answers such records with a validation
    /// error, which also ends as a dead letter).
    pub max_record_bytes: Option<usize>,
    /// How long a partial batch waits for more records before it is sent. Default 100 ms.
    /// A full batch, a retry, and everything after [`Producer::close`](crate::Producer::close)
    /// go without waiting.
    pub linger: Duration,
    /// PutRecords requests awaiting a response at once, over all streams. Default 4 (more
    /// gains nothing on one client; fewer costs throughput).
    pub max_in_flight: usize,
    /// Records accepted and not yet settled (acknowledged or dead-lettered). When the buffer
    /// is full, `submit` waits: this is the backpressure that stops the pipeline reading its
    /// source. Default 10 000.
    pub buffer_max_records: usize,
    /// Data + partition key bytes of those records; the same backpressure. Default 64 MiB.
    /// Must be at least the record limit.
    pub buffer_max_bytes: usize,
    /// How long after being accepted into the buffer a record may still be retried. A record
    /// not acknowledged by then is dead-lettered with its last error. Default 5 minutes:
    /// throttling is retried for that long, not for a fixed number of attempts.
    pub record_deadline: Duration,
    /// Never let a record overtake an earlier record with the same stream and partition key,
    /// even across retries and concurrent requests. Costs throughput on hot keys: a key has
    /// at most one record in flight at a time. Default `false`. See the crate documentation.
    pub ordered: bool,
    /// Time limit for one PutRecords attempt (SDK `operation_attempt_timeout`), after which
    /// the request counts as failed and its records are retried. Default 10 s.
    pub attempt_timeout: Duration,
    /// Time limit for one PutRecords operation (SDK `operation_timeout`). The producer turns
    /// the SDK's own retries off, so this only matters when it is shorter than
    /// `attempt_timeout`. Default 15 s.
    pub operation_timeout: Duration,
    /// First retry delay; it doubles with every failed attempt of a record, up to
    /// `retry_cap`, and is jittered between half and all of that value. Default 100 ms.
    pub retry_base: Duration,
    /// Longest retry delay. Default 5 s.
    pub retry_cap: Duration,
    /// Pack user records into KPL-format aggregated records, grouped by the shard they are
    /// predicted to land on (ListShards), each bounded by the record limit. Only for
    /// consumers that de-aggregate (the KCL, Firehose, Lambda with the aggregation
    /// library). Default `false`. See the crate documentation.
    pub aggregate: bool,
}

impl ProducerConfig {
    /// The defaults, writing to `stream` (a name or an ARN).
    pub fn new(stream: impl Into<String>) -> Self {
        Self {
            stream: stream.into(),
            max_records_per_request: KINESIS_MAX_RECORDS_PER_REQUEST,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_record_bytes: None,
            linger: Duration::from_millis(100),
            max_in_flight: 4,
            buffer_max_records: 10_000,
            buffer_max_bytes: 64 * 1024 * 1024,
            record_deadline: Duration::from_secs(300),
            ordered: false,
            attempt_timeout: Duration::from_secs(10),
            operation_timeout: Duration::from_secs(15),
            retry_base: Duration::from_millis(100),
            retry_cap: Duration::from_secs(5),
            aggregate: false,
        }
    }

    /// Checks the ranges that would otherwise make the producer stall or fail every request.
    /// Checks the settings without connecting, with the record limit that will apply
    /// (`max_record_bytes`, or [`DEFAULT_MAX_RECORD_BYTES`] when the stream's is not known
    /// yet). [`Producer::new`](crate::Producer::new) checks again with the stream's limit.
    ///
    /// # Errors
    /// [`ProducerError::InvalidConfig`], naming the field and the allowed range.
    pub fn validate(&self, max_record_bytes: usize) -> Result<(), ProducerError> {
        let fail = |m: String| Err(ProducerError::InvalidConfig(m));
        if self.stream.is_empty() {
            return fail("stream is empty".into());
        }
        if !(1..=KINESIS_MAX_RECORDS_PER_REQUEST).contains(&self.max_records_per_request) {
            return fail(format!(
                "max_records_per_request is {}, must be 1 to {KINESIS_MAX_RECORDS_PER_REQUEST}",
                self.max_records_per_request
            ));
        }
        if self.max_request_bytes == 0 || max_record_bytes == 0 {
            return fail("max_request_bytes and max_record_bytes must be positive".into());
        }
        if self.max_in_flight == 0 || self.buffer_max_records == 0 {
            return fail("max_in_flight and buffer_max_records must be positive".into());
        }
        if self.buffer_max_bytes < max_record_bytes {
            return fail(format!(
                "buffer_max_bytes ({}) is smaller than the record limit ({max_record_bytes}): \
                 a record of the largest size could never be accepted",
                self.buffer_max_bytes
            ));
        }
        if self.retry_base.is_zero() || self.retry_cap < self.retry_base {
            return fail("retry_base must be positive and at most retry_cap".into());
        }
        if self.attempt_timeout.is_zero() || self.operation_timeout.is_zero() {
            return fail("attempt_timeout and operation_timeout must be positive".into());
        }
        Ok(())
    }
}
