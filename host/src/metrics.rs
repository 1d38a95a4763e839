//! Counters every pipeline keeps, with stable names (Prometheus text format).
//!
//! Built on `prometheus-client` (the Prometheus project's own Rust client) so
//! that the exposition format is not ours to get wrong. Each metric has a
//! typed field here, so a metric cannot be misspelt at the place it counts.

use std::sync::Arc;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter as PromCounter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge as PromGauge;
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
        self.family
            .get_or_create(&vec![(self.label.to_string(), value.to_string())])
            .inc();
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
    /// Events dropped because their id was seen recently (a server replay).
    pub duplicates_dropped: Counter,
    /// Unix time (seconds) of the last event received; "time since the last event" is now minus this.
    pub last_event_unix_seconds: Gauge,
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
        let duplicates_dropped = Counter::default();
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
        })
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
}
