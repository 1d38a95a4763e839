//! The periodic rate line (`report_interval_ms`): per pipeline, the events of the interval
//! and events per second. (The seed's `reportMessagesReceivedMS` printed a running total
//! and called it a rate; this prints the rate.)

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use crate::admin::Pipelines;

/// Samples each pipeline's events per second every second (for `/pipelines`) until aborted.
pub fn spawn_rate_sampler(pipelines: Pipelines) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut before: HashMap<String, u64> = HashMap::new();
        let mut last = Instant::now();
        loop {
            ticker.tick().await;
            let elapsed = last.elapsed().as_secs_f64().max(f64::EPSILON);
            last = Instant::now();
            for (name, metrics) in pipelines.metrics() {
                let total = metrics.events_received.get();
                let events = total.saturating_sub(before.insert(name, total).unwrap_or(total));
                #[allow(clippy::cast_precision_loss)] // a rate for humans
                let rate = events as f64 / elapsed;
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
        let mut before: HashMap<String, u64> = HashMap::new();
        let mut last = Instant::now();
        loop {
            ticker.tick().await;
            let elapsed = last.elapsed().as_secs_f64().max(f64::EPSILON);
            last = Instant::now();
            for (name, metrics) in pipelines.metrics() {
                let total = metrics.events_received.get();
                let events = total.saturating_sub(before.insert(name.clone(), total).unwrap_or(0));
                #[allow(clippy::cast_precision_loss)] // a rate for humans
                let per_second = events as f64 / elapsed;
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
