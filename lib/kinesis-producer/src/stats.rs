//! Counters that the producer keeps while it runs.

use std::sync::atomic::{AtomicU64, Ordering};

/// Live counters, updated with relaxed atomics (each value is exact; two values read one after
/// the other need not be from the same instant). Read them through the methods, or take a
/// [`StatsSnapshot`].
#[derive(Debug, Default)]
pub struct ProducerStats {
    pub(crate) records_submitted: AtomicU64,
    pub(crate) records_acked: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) retried_records: AtomicU64,
    pub(crate) throttled_records: AtomicU64,
    pub(crate) failed_requests: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) in_flight_requests: AtomicU64,
    pub(crate) in_flight_records: AtomicU64,
    pub(crate) buffered_records: AtomicU64,
    pub(crate) buffered_bytes: AtomicU64,
    pub(crate) buffered_records_peak: AtomicU64,
    pub(crate) buffered_bytes_peak: AtomicU64,
}

/// A copy of every counter of [`ProducerStats`], for logs and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Records passed to `submit` (including those dead-lettered at once).
    pub records_submitted: u64,
    /// Records that Kinesis acknowledged (each counted once, however many attempts it took).
    pub records_acked: u64,
    /// PutRecords requests sent (every attempt).
    pub requests: u64,
    /// Records scheduled for another attempt after a failure of any kind.
    pub retried_records: u64,
    /// Records refused for throughput (ProvisionedThroughputExceededException per record, or a
    /// throttled request).
    pub throttled_records: u64,
    /// PutRecords requests that failed as a whole (HTTP error, timeout, connection reset).
    pub failed_requests: u64,
    /// Records given up on and reported as [`DeadLetter`](crate::DeadLetter)s.
    pub dead_lettered: u64,
    /// PutRecords requests awaiting their response now.
    pub in_flight_requests: u64,
    /// Records inside those requests.
    pub in_flight_records: u64,
    /// Records accepted and not yet settled (acknowledged or dead-lettered), whether queued,
    /// in flight or waiting to be retried. Bounded by `buffer_max_records`.
    pub buffered_records: u64,
    /// Their size (data + partition key). Bounded by `buffer_max_bytes`.
    pub buffered_bytes: u64,
    /// The highest `buffered_records` seen.
    pub buffered_records_peak: u64,
    /// The highest `buffered_bytes` seen.
    pub buffered_bytes_peak: u64,
}

macro_rules! getters {
    ($($name:ident),* $(,)?) => {
        impl ProducerStats {
            $(
                #[doc = concat!("See [`StatsSnapshot::", stringify!($name), "`].")]
                pub fn $name(&self) -> u64 {
                    self.$name.load(Ordering::Relaxed)
                }
            )*

            /// Reads every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name()),* }
            }
        }
    };
}

getters!(
    records_submitted,
    records_acked,
    requests,
    retried_records,
    throttled_records,
    failed_requests,
    dead_lettered,
    in_flight_requests,
    in_flight_records,
    buffered_records,
    buffered_bytes,
    buffered_records_peak,
    buffered_bytes_peak,
);

impl ProducerStats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }
}
