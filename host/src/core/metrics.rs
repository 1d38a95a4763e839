//! Counters every pipeline keeps, with stable names (Prometheus text format).
//!
//! Built on `prometheus-client` (the Prometheus project's own Rust client) so
//! that the exposition format is not ours to get wrong. Each metric has a
//! typed field here, so a metric cannot be misspelt at the place it counts.

use std::sync::{Arc, OnceLock};

use kinesis_producer::StatsSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter as PromCounter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge as PromGauge};
use prometheus_client::registry::Registry;

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

/// One pipeline's counters.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Events the source delivered (after its `types` filter).
    pub events_received: Counter,
    /// Records written and acknowledged by the sink.
    pub records_written: Counter,
    /// Events dropped by the parser for exceeding `max-event-bytes`.
    pub oversized_events: Counter,
    /// Successful connections (status 200, text/event-stream).
    pub connections: Counter,
    /// Reconnects, by cause.
    pub reconnects: LabeledCounter,
    /// Non-200 HTTP statuses seen, by status.
    pub http_statuses: LabeledCounter,
    /// Batches a filter failed on.
    pub filter_errors: Counter,
    /// Events or records written to the dead-letter output.
    pub dead_letters: Counter,
    /// Filter versions rolled back after failing on probation.
    pub filter_rollbacks: Counter,
    /// Filter swaps that went live.
    pub filter_swaps: Counter,
    /// Events dropped as a server's replay, by cause (`reconnect`, `restart`).
    pub duplicates_dropped: LabeledCounter,
    /// Unix time (seconds) of the last event received; "time since the last event" is now minus this.
    pub last_event_unix_seconds: Gauge,
    /// The Kinesis producer's own counters, read at each scrape once a Kinesis sink is open.
    kinesis: Arc<KinesisCollector>,
}

/// Reads the Kinesis producer's counters (set once, when the sink opens).
type KinesisStats = OnceLock<Box<dyn Fn() -> StatsSnapshot + Send + Sync>>;

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
        let s = read();
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
    /// Registers every counter under `sse_ingest_*` with the pipeline's label.
    pub fn new(pipeline: &str) -> Arc<Self> {
        let mut root = Registry::with_prefix("sse_ingest");
        let registry = root.sub_registry_with_label((
            std::borrow::Cow::Borrowed("pipeline"),
            std::borrow::Cow::Owned(pipeline.to_string()),
        ));
        let events_received = Counter::default();
        let records_written = Counter::default();
        let oversized_events = Counter::default();
        let connections = Counter::default();
        let filter_errors = Counter::default();
        let reconnects = LabeledCounter::new("cause");
        let http_statuses = LabeledCounter::new("status");
        let duplicates_dropped = LabeledCounter::new("cause");
        let dead_letters = Counter::default();
        let filter_rollbacks = Counter::default();
        let filter_swaps = Counter::default();
        let last_event_unix_seconds = Gauge::default();
        registry.register(
            "events_received",
            "Events delivered by the source",
            events_received.0.clone(),
        );
        registry.register(
            "records_written",
            "Records acknowledged by the sink",
            records_written.0.clone(),
        );
        registry.register(
            "oversized_events",
            "Events dropped for exceeding max-event-bytes",
            oversized_events.0.clone(),
        );
        registry.register(
            "connections",
            "Successful SSE connections",
            connections.0.clone(),
        );
        registry.register(
            "filter_errors",
            "Batches a filter failed on",
            filter_errors.0.clone(),
        );
        registry.register(
            "reconnects",
            "Reconnects by cause",
            reconnects.family.clone(),
        );
        registry.register(
            "http_statuses",
            "Non-200 HTTP statuses by status",
            http_statuses.family.clone(),
        );
        registry.register(
            "duplicates_dropped",
            "Events dropped as a server's replay after a reconnect or restart, by cause",
            duplicates_dropped.family.clone(),
        );
        registry.register(
            "dead_letters",
            "Events or records written to the dead-letter output",
            dead_letters.0.clone(),
        );
        registry.register(
            "filter_rollbacks",
            "Filter versions rolled back after failing on probation",
            filter_rollbacks.0.clone(),
        );
        registry.register(
            "filter_swaps",
            "Filter swaps that went live",
            filter_swaps.0.clone(),
        );
        registry.register(
            "last_event_unix_seconds",
            "Unix time of the last event received",
            last_event_unix_seconds.0.clone(),
        );
        let kinesis = Arc::new(KinesisCollector(KinesisStats::default()));
        registry.register_collector(Box::new(Arc::clone(&kinesis)));
        Arc::new(Self {
            registry: root,
            events_received,
            records_written,
            oversized_events,
            connections,
            reconnects,
            http_statuses,
            filter_errors,
            duplicates_dropped,
            dead_letters,
            filter_rollbacks,
            filter_swaps,
            last_event_unix_seconds,
            kinesis,
        })
    }

    /// Exports the Kinesis producer's counters, read through `stats` at each scrape.
    /// Only the first call counts (a pipeline has one sink).
    pub fn watch_kinesis(&self, stats: impl Fn() -> StatsSnapshot + Send + Sync + 'static) {
        let _ = self.kinesis.0.set(Box::new(stats));
    }

    /// The Prometheus text exposition of every counter.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_with_the_pipeline_label() {
        let metrics = Metrics::new("wiki");
        metrics.events_received.add(3);
        metrics.reconnects.inc_label("network");
        let text = metrics.render();
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
        let metrics = Metrics::new("wiki");
        metrics.dead_letters.add(2);
        metrics.duplicates_dropped.inc_label("reconnect");
        metrics.filter_swaps.inc();
        metrics.filter_rollbacks.inc();
        metrics.last_event_unix_seconds.set(1_700_000_000);
        let text = metrics.render();
        for line in [
            "sse_ingest_dead_letters_total{pipeline=\"wiki\"} 2",
            "sse_ingest_duplicates_dropped_total{pipeline=\"wiki\",cause=\"reconnect\"} 1",
            "sse_ingest_filter_swaps_total{pipeline=\"wiki\"} 1",
            "sse_ingest_filter_rollbacks_total{pipeline=\"wiki\"} 1",
            "sse_ingest_last_event_unix_seconds{pipeline=\"wiki\"} 1700000000",
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
        let metrics = Metrics::new("wiki");
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(5));
        let source = Arc::clone(&acked);
        metrics.watch_kinesis(move || StatsSnapshot {
            records_acked: source.load(std::sync::atomic::Ordering::Relaxed),
            throttled_records: 7,
            buffered_records: 3,
            ..StatsSnapshot::default()
        });
        let text = metrics.render();
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
        acked.store(9, std::sync::atomic::Ordering::Relaxed);
        assert!(
            metrics
                .render()
                .contains("sse_ingest_kinesis_records_acked_total{pipeline=\"wiki\"} 9")
        );
    }
}
