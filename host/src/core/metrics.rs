//! Counters every pipeline keeps, with stable names, in one exposition for the process.
//!
//! Built on `prometheus-client` (the Prometheus project's own Rust client) so that the
//! exposition format is not ours to get wrong. Every metric is declared once, in the
//! [`pipeline_metrics!`] table below: that one line gives the typed field a pipeline counts
//! with, its name and help, and its registration, so a metric can be neither misspelt nor
//! counted and never exported. Every pipeline registers into one [`Exposition`] with its
//! `pipeline` label, so `/metrics` is one OpenMetrics document whatever the number of
//! pipelines.

use std::sync::{Arc, Mutex, OnceLock};

use kinesis_producer::{LatencySnapshot, StatsSnapshot};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter as PromCounter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge as PromGauge};
use prometheus_client::registry::{Metric, Registry};

/// The content type of [`Exposition::render`]'s text: OpenMetrics, which Prometheus reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The process's metrics: every pipeline's, in one registry.
#[derive(Debug, Clone)]
pub struct Exposition(Arc<Mutex<Registry>>);

impl Default for Exposition {
    fn default() -> Self {
        Self(Arc::new(Mutex::new(Registry::with_prefix("sse_ingest"))))
    }
}

impl Exposition {
    /// Every registered metric as one OpenMetrics text document ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Ok(registry) = self.0.lock() {
            // Writing into a String cannot fail.
            let _ = encode(&mut text, &registry);
        }
        text
    }
}

/// How a kind of metric is made and registered (see [`pipeline_metrics!`]).
trait Declared: Sized {
    /// A new metric; `label` names the label of a labelled one.
    fn declare(label: Option<&'static str>) -> Self;
    /// What the registry exports.
    fn exported(&self) -> impl Metric;
}

/// A monotonically increasing count.
#[derive(Debug, Clone, Default)]
pub struct Counter(PromCounter);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.inc();
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.inc_by(n);
    }
    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// A value that goes up and down.
#[derive(Debug, Clone, Default)]
pub struct Gauge(PromGauge);

impl Gauge {
    /// Sets the value.
    pub fn set(&self, value: i64) {
        self.0.set(value);
    }
    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.get()
    }
}

/// A count per value of one label.
#[derive(Debug, Clone)]
pub struct LabeledCounter {
    family: Family<Vec<(String, String)>, PromCounter>,
    label: &'static str,
}

impl LabeledCounter {
    fn new(label: &'static str) -> Self {
        Self {
            family: Family::default(),
            label,
        }
    }
    /// Adds one to the count of `value`.
    pub fn inc_label(&self, value: &str) {
        self.add_label(value, 1);
    }
    /// Adds `n` to the count of `value`.
    pub fn add_label(&self, value: &str, n: u64) {
        self.family
            .get_or_create(&vec![(self.label.to_string(), value.to_string())])
            .inc_by(n);
    }
    /// The count of `value`.
    pub fn get_label(&self, value: &str) -> u64 {
        self.family
            .get_or_create(&vec![(self.label.to_string(), value.to_string())])
            .get()
    }
}

impl Declared for Counter {
    fn declare(_label: Option<&'static str>) -> Self {
        Self::default()
    }
    fn exported(&self) -> impl Metric {
        self.0.clone()
    }
}

impl Declared for Gauge {
    fn declare(_label: Option<&'static str>) -> Self {
        Self::default()
    }
    fn exported(&self) -> impl Metric {
        self.0.clone()
    }
}

impl Declared for LabeledCounter {
    fn declare(label: Option<&'static str>) -> Self {
        Self::new(label.unwrap_or("value"))
    }
    fn exported(&self) -> impl Metric {
        self.family.clone()
    }
}

/// Declares one pipeline's metrics: `field: Kind [("label")] = "name", "help";`. The name is
/// what Prometheus sees after `sse_ingest_` (counters get `_total`).
macro_rules! pipeline_metrics {
    ($( $(#[$doc:meta])* $field:ident : $kind:ident $(($label:literal))? = $name:literal, $help:literal; )*) => {
        /// One pipeline's metrics, each registered by construction (see the module docs).
        #[derive(Debug)]
        pub struct Metrics {
            $( $(#[$doc])* pub $field: $kind, )*
            /// The Kinesis producer's own counters, read at each scrape once a Kinesis sink is open.
            kinesis: Arc<KinesisCollector>,
            /// Why the last connection ended or failed (for `/ready` and `/pipelines`).
            pub last_disconnect: Mutex<String>,
            /// The id of the last event whose records the sink acknowledged (what the
            /// checkpoint moves to), for `/pipelines`.
            pub last_acknowledged_id: Mutex<String>,
            /// Events per second over the last second, sampled by the service (`/pipelines`).
            pub events_per_second: Mutex<f64>,
        }

        impl Metrics {
            /// Every metric of `pipeline`, registered in `exposition` with the pipeline's label.
            pub fn register(exposition: &Exposition, pipeline: &str) -> Arc<Self> {
                let metrics = Self {
                    $( $field: <$kind as Declared>::declare(pipeline_metrics!(@label $($label)?)), )*
                    kinesis: Arc::new(KinesisCollector(KinesisStats::default())),
                    last_disconnect: Mutex::new(String::new()),
                    last_acknowledged_id: Mutex::new(String::new()),
                    events_per_second: Mutex::new(0.0),
                };
                metrics.show_rare_labels();
                if let Ok(mut root) = exposition.0.lock() {
                    let registry = root.sub_registry_with_label((
                        std::borrow::Cow::Borrowed("pipeline"),
                        std::borrow::Cow::Owned(pipeline.to_string()),
                    ));
                    $( registry.register($name, $help, metrics.$field.exported()); )*
                    registry.register_collector(Box::new(Arc::clone(&metrics.kinesis)));
                    registry.register_collector(Box::new(LastEventAge(
                        metrics.last_event_unix_seconds.clone(),
                    )));
                }
                Arc::new(metrics)
            }

            /// The names (after `sse_ingest_`) of every declared metric, for docs and tests.
            pub const NAMES: &'static [&'static str] = &[$($name),*];
        }
    };
    (@label $label:literal) => { Some($label) };
    (@label) => { None };
}

pipeline_metrics! {
    /// Events the source delivered (after its `types` filter).
    events_received: Counter = "events_received", "Events delivered by the source";
    /// Events handed to the filter (after replays were dropped).
    events_delivered: Counter = "events_delivered", "Events handed to the filter, after replays were dropped";
    /// Events a filter made no record of: per batch, events minus records when fewer.
    events_filtered_out: Counter = "events_filtered_out", "Events the filter made no record of (exact for sse-ingest:filter@0.2.0 filters; for 0.1 filters, per batch: events minus records, when fewer)";
    /// Bytes of event data received (the `data` fields, after parsing).
    bytes_received: Counter = "bytes_received", "Bytes of event data received";
    /// Records written and acknowledged by the sink.
    records_written: Counter = "records_written", "Records acknowledged by the sink";
    /// Events dropped by the parser for exceeding `max-event-bytes`.
    oversized_events: Counter = "oversized_events", "Events dropped for exceeding max-event-bytes";
    /// Ids longer than `sizing::MAX_ID_BYTES`, not kept (their events are delivered).
    oversized_ids: Counter = "oversized_ids", "Event ids longer than the 4 KiB kept: their events were delivered without an id";
    /// Successful connections (status 200, text/event-stream).
    connections: Counter = "connections", "Successful SSE connections";
    /// Reconnects, by cause.
    reconnects: LabeledCounter("cause") = "reconnects", "Reconnects by cause";
    /// HTTP responses, by status: every status, redirect hops, 204 and fatal ones included.
    http_statuses: LabeledCounter("status") = "http_statuses", "HTTP responses by status, redirect hops included";
    /// Batches a filter failed on.
    filter_errors: Counter = "filter_errors", "Batches a filter failed on";
    filter_event_failures: Counter = "filter_event_failures", "Events a filter failed one by one (dead-lettered with its reason while the rest of the batch went on)";
    /// Events or records written to the dead-letter output.
    dead_letters: Counter = "dead_letters", "Events or records written to the dead-letter output";
    /// Batches on which the filter trapped (a panic, its CPU budget, its memory limit).
    filter_traps: Counter = "filter_traps", "Batches on which the filter trapped (panic, CPU budget, memory limit)";
    /// Filter versions rolled back: on probation, or at any time under `--on-filter-error rollback`.
    filter_rollbacks: Counter = "filter_rollbacks", "Filter versions rolled back (failing on probation, or at any time under --on-filter-error rollback)";
    /// Filter swaps that went live.
    filter_swaps: Counter = "filter_swaps", "Filter swaps that went live";
    /// Events dropped as a server's replay, by cause (`reconnect`, `restart`).
    duplicates_dropped: LabeledCounter("cause") = "duplicates_dropped", "Events dropped as a server's replay after a reconnect or restart, by cause";
    /// Unix time (seconds) of the last event received; "time since the last event" is now minus this.
    last_event_unix_seconds: Gauge = "last_event_unix_seconds", "Unix time of the last event received";
    /// End-of-stream drains that gave up because the sink acknowledged nothing for
    /// `--drain-stall-timeout-ms` (what was left went to the dead letters).
    drain_stalls: Counter = "drain_stalls", "End-of-stream drains that gave up after no record was acknowledged for the drain stall timeout";
    /// Checkpoint writes that failed (a transient failure is tried again on the next tick).
    checkpoint_write_failures: Counter = "checkpoint_write_failures", "Checkpoint writes that failed (a transient failure is tried again on the next tick)";
    /// Checkpoint writes whose answer was lost (a 500, a timeout) but which the table holds.
    checkpoint_ambiguous_writes: Counter = "checkpoint_ambiguous_writes", "Checkpoint writes whose answer was lost or refused on a retry, found applied in the table (success)";
    /// Heartbeat reads of the checkpoint table that failed (tried again at the next beat).
    checkpoint_heartbeat_failures: Counter = "checkpoint_heartbeat_failures", "Heartbeat reads of the pipeline's checkpoint item that failed (tried again at the next beat)";
    /// In-process restarts after a transient failure (AWS throttling or 5xx, no answer, a source trap).
    restarts: Counter = "pipeline_restarts", "Restarts of the pipeline in the process after a transient failure";
    /// Ends because another process took the pipeline's checkpoint over (fenced).
    handovers: Counter = "pipeline_handovers", "Times the pipeline ended here because another process took its checkpoint over";
    /// 1 while the SSE connection is open (status 200, text/event-stream), else 0.
    connected: Gauge = "connected", "1 while the SSE connection is open";
    /// 1 while the pipeline waits for room to write its records or dead letters (a full
    /// disk, a quota, the dead-letter bound), taking no events meanwhile.
    waiting_for_room: Gauge = "waiting_for_room", "1 while the pipeline waits for room to write (full disk, quota, dead-letter bound) and takes no events";
    /// Writes that failed for want of room, by reason (`disk_full`, `quota_exceeded`,
    /// `dead_letters_full`); each is tried again.
    write_failures: LabeledCounter("reason") = "write_failures", "Writes of records, dead letters or checkpoints that failed for want of room, by reason (each is tried again)";
}

/// `seconds_since_last_event`, computed at each scrape from `last_event_unix_seconds` (a
/// stored age would be stale by the time it is read); absent until the first event.
#[derive(Debug)]
struct LastEventAge(Gauge);

impl Collector for LastEventAge {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let last = self.0.get();
        if last <= 0 {
            return Ok(());
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |elapsed| elapsed.as_secs_f64());
        #[allow(clippy::cast_precision_loss)] // Unix seconds fit an f64 exactly
        let age = (now - last as f64).max(0.0);
        let gauge = ConstGauge::new(age);
        gauge.encode(encoder.encode_descriptor(
            "seconds_since_last_event",
            "Seconds since the last event was received",
            None,
            gauge.metric_type(),
        )?)
    }
}

/// What a scrape reads of a Kinesis producer: its counters and its request latencies.
pub type KinesisReading = (StatsSnapshot, LatencySnapshot);

/// Reads the Kinesis producer (set once, when the sink opens).
type KinesisStats = OnceLock<Box<dyn Fn() -> KinesisReading + Send + Sync>>;

/// Exports the producer's counters at scrape time, so they are never stale copies.
struct KinesisCollector(KinesisStats);

impl std::fmt::Debug for KinesisCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KinesisCollector")
            .field("watching", &self.0.get().is_some())
            .finish()
    }
}

impl Collector for KinesisCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(read) = self.0.get() else {
            return Ok(());
        };
        let (s, latency) = read();
        let mut histogram = encoder.encode_descriptor(
            "kinesis_request_duration_seconds",
            "PutRecords request latency, from send to response",
            None,
            MetricType::Histogram,
        )?;
        histogram.encode_histogram::<NoLabelSet>(
            latency.sum_seconds,
            latency.count,
            &latency.buckets,
            None,
        )?;
        let counters = [
            (
                "kinesis_records_submitted",
                "Records handed to the Kinesis producer",
                s.records_submitted,
            ),
            (
                "kinesis_records_acked",
                "Records Kinesis acknowledged",
                s.records_acked,
            ),
            ("kinesis_requests", "PutRecords requests sent", s.requests),
            (
                "kinesis_retried_records",
                "Records sent again after a failure",
                s.retried_records,
            ),
            (
                "kinesis_throttled_records",
                "Records Kinesis throttled (ProvisionedThroughputExceeded)",
                s.throttled_records,
            ),
            (
                "kinesis_failed_requests",
                "PutRecords requests that failed as a whole",
                s.failed_requests,
            ),
            (
                "kinesis_dead_lettered",
                "Records the producer gave up on",
                s.dead_lettered,
            ),
            (
                "kinesis_aggregated_records",
                "Aggregated Kinesis records (KPL format, two records or more) acknowledged",
                s.aggregated_records,
            ),
            (
                "kinesis_aggregated_user_records",
                "Records acknowledged inside aggregated Kinesis records",
                s.aggregated_user_records,
            ),
            (
                "kinesis_payload_units",
                "PUT payload units (25 KiB, at least one per Kinesis record) acknowledged",
                s.payload_units,
            ),
            (
                "kinesis_shard_map_reads",
                "ListShards reads of the stream's shard map (aggregation)",
                s.shard_map_reads,
            ),
            (
                "kinesis_shard_map_failures",
                "ListShards reads that failed (records then go without aggregation)",
                s.shard_map_failures,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let gauges = [
            (
                "kinesis_buffered_records",
                "Records accepted and not yet settled",
                s.buffered_records,
            ),
            (
                "kinesis_buffered_bytes",
                "Bytes of those records",
                s.buffered_bytes,
            ),
            (
                "kinesis_in_flight_requests",
                "PutRecords requests awaiting a response",
                s.in_flight_requests,
            ),
            (
                "kinesis_in_flight_records",
                "Records in those requests",
                s.in_flight_records,
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

impl Metrics {
    /// Write failures are rare, and a dashboard or an alert on their rate needs the series
    /// before the first one: every reason starts at 0.
    fn show_rare_labels(&self) {
        use crate::core::room::NoRoom;
        for reason in [
            NoRoom::DiskFull,
            NoRoom::QuotaExceeded,
            NoRoom::DeadLettersFull,
        ] {
            self.write_failures.add_label(reason.label(), 0);
        }
    }

    /// Exports the Kinesis producer's counters, read through `stats` at each scrape.
    /// Only the first call counts (a pipeline has one sink).
    pub fn watch_kinesis(&self, stats: impl Fn() -> KinesisReading + Send + Sync + 'static) {
        let _ = self.kinesis.0.set(Box::new(stats));
    }

    /// Records handed to the sink and not yet acknowledged: the Kinesis producer's buffer
    /// (the file and stdout sinks acknowledge as they write, so none wait there).
    pub fn records_waiting(&self) -> u64 {
        self.kinesis
            .0
            .get()
            .map_or(0, |read| read().0.buffered_records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_the_pipeline_label() {
        let exposition = Exposition::default();
        let metrics = Metrics::register(&exposition, "wiki");
        metrics.events_received.add(3);
        metrics.reconnects.inc_label("network");
        let text = exposition.render();
        assert!(
            text.contains("sse_ingest_events_received_total{pipeline=\"wiki\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("sse_ingest_reconnects_total{pipeline=\"wiki\",cause=\"network\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn every_counter_is_exported() {
        let exposition = Exposition::default();
        let metrics = Metrics::register(&exposition, "wiki");
        metrics.dead_letters.add(2);
        metrics.duplicates_dropped.inc_label("reconnect");
        metrics.filter_swaps.inc();
        metrics.filter_rollbacks.inc();
        metrics.last_event_unix_seconds.set(1_700_000_000);
        let text = exposition.render();
        for line in [
            "sse_ingest_dead_letters_total{pipeline=\"wiki\"} 2",
            "sse_ingest_duplicates_dropped_total{pipeline=\"wiki\",cause=\"reconnect\"} 1",
            "sse_ingest_filter_swaps_total{pipeline=\"wiki\"} 1",
            "sse_ingest_filter_rollbacks_total{pipeline=\"wiki\"} 1",
            "sse_ingest_last_event_unix_seconds{pipeline=\"wiki\"} 1700000000",
            "sse_ingest_seconds_since_last_event{pipeline=\"wiki\"} ",
            "sse_ingest_waiting_for_room{pipeline=\"wiki\"} 0",
            "sse_ingest_write_failures_total{pipeline=\"wiki\",reason=\"disk_full\"} 0",
            "sse_ingest_write_failures_total{pipeline=\"wiki\",reason=\"quota_exceeded\"} 0",
            "sse_ingest_write_failures_total{pipeline=\"wiki\",reason=\"dead_letters_full\"} 0",
        ] {
            assert!(text.contains(line), "no `{line}` in:\n{text}");
        }
        assert!(
            !text.contains("kinesis"),
            "no Kinesis sink, no Kinesis metrics"
        );
    }

    #[test]
    fn kinesis_producer_counters_are_read_at_each_scrape() {
        let exposition = Exposition::default();
        let metrics = Metrics::register(&exposition, "wiki");
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(5));
        let source = Arc::clone(&acked);
        metrics.watch_kinesis(move || {
            let stats = StatsSnapshot {
                records_acked: source.load(std::sync::atomic::Ordering::Relaxed),
                throttled_records: 7,
                buffered_records: 3,
                aggregated_records: 4,
                aggregated_user_records: 100,
                payload_units: 17,
                shard_map_reads: 2,
                shard_map_failures: 1,
                ..StatsSnapshot::default()
            };
            let latency = LatencySnapshot {
                buckets: vec![(0.1, 2), (f64::INFINITY, 3)],
                sum_seconds: 1.5,
                count: 3,
            };
            (stats, latency)
        });
        let text = exposition.render();
        assert!(
            text.contains(
                "sse_ingest_kinesis_request_duration_seconds_bucket{le=\"0.1\",pipeline=\"wiki\"} 2"
            ) || text.contains(
                "sse_ingest_kinesis_request_duration_seconds_bucket{pipeline=\"wiki\",le=\"0.1\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("sse_ingest_kinesis_request_duration_seconds_count{pipeline=\"wiki\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("sse_ingest_kinesis_records_acked_total{pipeline=\"wiki\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("sse_ingest_kinesis_throttled_records_total{pipeline=\"wiki\"} 7"),
            "{text}"
        );
        assert!(
            text.contains("sse_ingest_kinesis_buffered_records{pipeline=\"wiki\"} 3"),
            "{text}"
        );
        for line in [
            "sse_ingest_kinesis_aggregated_records_total{pipeline=\"wiki\"} 4",
            "sse_ingest_kinesis_aggregated_user_records_total{pipeline=\"wiki\"} 100",
            "sse_ingest_kinesis_payload_units_total{pipeline=\"wiki\"} 17",
            "sse_ingest_kinesis_shard_map_reads_total{pipeline=\"wiki\"} 2",
            "sse_ingest_kinesis_shard_map_failures_total{pipeline=\"wiki\"} 1",
        ] {
            assert!(text.contains(line), "no `{line}` in:\n{text}");
        }
        acked.store(9, std::sync::atomic::Ordering::Relaxed);
        assert!(
            exposition
                .render()
                .contains("sse_ingest_kinesis_records_acked_total{pipeline=\"wiki\"} 9")
        );
    }
}

#[cfg(test)]
mod exposition_tests {
    use super::*;

    #[test]
    fn every_declared_metric_of_every_pipeline_is_in_one_document() {
        let exposition = Exposition::default();
        let a = Metrics::register(&exposition, "a");
        let b = Metrics::register(&exposition, "b");
        a.events_received.inc();
        b.events_received.add(2);
        // A labelled family is exported once it has a sample.
        a.reconnects.inc_label("end_of_stream");
        a.http_statuses.inc_label("200");
        a.duplicates_dropped.inc_label("reconnect");
        let text = exposition.render();
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        assert!(
            text.contains("sse_ingest_events_received_total{pipeline=\"a\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("sse_ingest_events_received_total{pipeline=\"b\"} 2"),
            "{text}"
        );
        for name in Metrics::NAMES {
            let declared = format!("# HELP sse_ingest_{name} ");
            assert!(
                text.contains(&declared),
                "{name} is declared but not exported"
            );
        }
    }
}
