//! Counters that the producer keeps while it runs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

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
    pub(crate) aggregated_records: AtomicU64,
    pub(crate) aggregated_user_records: AtomicU64,
    pub(crate) payload_units: AtomicU64,
    pub(crate) shard_map_reads: AtomicU64,
    pub(crate) shard_map_failures: AtomicU64,
    /// How long PutRecords requests took, from send to response.
    pub(crate) request_latency: LatencyHistogram,
}

/// Upper bounds, in seconds, of the request latency histogram's buckets (Prometheus'
/// defaults, which span a healthy PutRecords and a timed-out one).
pub const LATENCY_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A histogram of request latencies: a count per bucket, kept with relaxed atomics.
#[derive(Debug, Default)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); the last one is above every bound.
    counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

/// A copy of a [`LatencyHistogram`] as Prometheus writes one.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencySnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative, ending with
    /// `(f64::INFINITY, count)`.
    pub buckets: Vec<(f64, u64)>,
    /// Every observation, in seconds, added up.
    pub sum_seconds: f64,
    /// How many observations.
    pub count: u64,
}

impl LatencyHistogram {
    /// Records one request's latency.
    pub(crate) fn observe(&self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// The histogram now.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.counts.len());
        for (n, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            let bound = LATENCY_BUCKETS.get(n).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, cumulative));
        }
        #[allow(clippy::cast_precision_loss)] // microseconds to seconds, for a metric
        let sum_seconds = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        LatencySnapshot {
            buckets,
            sum_seconds,
            count: cumulative,
        }
    }
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
    /// Aggregated Kinesis records (two user records or more) that Kinesis acknowledged.
    pub aggregated_records: u64,
    /// User records inside those: divided by `aggregated_records`, the user records per
    /// aggregate.
    pub aggregated_user_records: u64,
    /// PUT payload units (25 KiB, at least one per Kinesis record) of the Kinesis records
    /// acknowledged: what Kinesis bills.
    pub payload_units: u64,
    /// ListShards reads of a shard map (aggregation: at start, and after a record landed
    /// on another shard than predicted).
    pub shard_map_reads: u64,
    /// Of those, the ones that failed (records then go plain until a later read succeeds).
    pub shard_map_failures: u64,
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
    aggregated_records,
    aggregated_user_records,
    payload_units,
    shard_map_reads,
    shard_map_failures,
);

impl ProducerStats {
    /// How long PutRecords requests took.
    pub fn request_latency(&self) -> LatencySnapshot {
        self.request_latency.snapshot()
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latencies_fall_into_cumulative_buckets_with_their_sum() {
        let histogram = LatencyHistogram::default();
        histogram.observe(Duration::from_millis(3));
        histogram.observe(Duration::from_millis(30));
        histogram.observe(Duration::from_secs(60));
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count, 3);
        assert_eq!(snapshot.buckets[0], (0.005, 1));
        assert_eq!(snapshot.buckets[3], (0.05, 2));
        assert_eq!(snapshot.buckets.last(), Some(&(f64::INFINITY, 3)));
        assert!((snapshot.sum_seconds - 60.033).abs() < 1e-9);
    }
}
