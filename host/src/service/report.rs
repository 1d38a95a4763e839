//! The periodic rate line (`report_interval_ms`): per pipeline, the events of the interval
//! and events per second. (The seed's `reportMessagesReceivedMS` printed a running total
//! and called it a rate; this prints the rate.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::admin::Pipelines;
use crate::core::metrics::Metrics;

/// Events of each pipeline since the previous sample, and per second: one meter for the
/// `/pipelines` rate and the rate line alike.
struct Meter {
    before: HashMap<String, u64>,
    last: Instant,
}

impl Meter {
    fn new() -> Self {
        Self {
            before: HashMap::new(),
            last: Instant::now(),
        }
    }

    /// Each pipeline's name, metrics, events since the last sample and events per second.
    fn sample(&mut self, pipelines: &Pipelines) -> Vec<(String, Arc<Metrics>, u64, f64)> {
        let elapsed = self.last.elapsed().as_secs_f64().max(f64::EPSILON);
        self.last = Instant::now();
        pipelines
            .metrics()
            .into_iter()
            .map(|(name, metrics)| {
                let total = metrics.events_received.get();
                let before = self.before.insert(name.clone(), total).unwrap_or(0);
                let events = total.saturating_sub(before);
                #[allow(clippy::cast_precision_loss)] // a rate for humans
                let rate = events as f64 / elapsed;
                (name, metrics, events, rate)
            })
            .collect()
    }
}

/// Samples each pipeline's events per second every second (`/pipelines`, the live summary)
/// until aborted.
pub fn spawn_rate_sampler(pipelines: Pipelines) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut meter = Meter::new();
        loop {
            ticker.tick().await;
            for (_, metrics, _, rate) in meter.sample(&pipelines) {
                if let Ok(mut stored) = metrics.events_per_second.lock() {
                    *stored = rate;
                }
            }
        }
    })
}

/// Logs one line per pipeline every `interval` until aborted.
pub fn spawn(interval: Duration, pipelines: Pipelines) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        let mut meter = Meter::new();
        loop {
            ticker.tick().await;
            for (name, metrics, events, per_second) in meter.sample(&pipelines) {
                tracing::info!(
                    pipeline = %name,
                    events,
                    events_per_second = format!("{per_second:.1}"),
                    records_written = metrics.records_written.get(),
                    "rate"
                );
            }
        }
    })
}
