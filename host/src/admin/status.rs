//! What `/pipelines` and `/ready` say of each pipeline.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::core::metrics::Metrics;
use crate::pipeline::PipelineHandle;

/// Where a pipeline is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Locking its state, compiling, opening its sink.
    Starting,
    /// Reading its stream (connected or reconnecting).
    Running,
    /// Paused over the API: not reading, the connection kept while the server keeps it.
    Paused,
    /// Asked to stop (signal, or removed or changed by a reload): draining.
    Stopping,
    /// Stopped on request, everything received written.
    Stopped,
    /// Its stream ended (`--once`) or the server said not to reconnect (204).
    Ended,
    /// It failed for a reason that may pass and waits to start again; the reason says
    /// when and why.
    Restarting,
    /// Another process took its checkpoint over: it ended here without writing.
    Fenced,
    /// It failed; the reason says why.
    Failed,
}

impl State {
    fn label(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Ended => "ended",
            Self::Restarting => "restarting",
            Self::Fenced => "fenced",
            Self::Failed => "failed",
        }
    }
}

/// One pipeline as the API knows it.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    pub state: State,
    pub reason: Option<String>,
    url: String,
    filter: String,
    since_unix_seconds: u64,
    pub metrics: Arc<Metrics>,
    /// Present while the pipeline takes swaps.
    pub handle: Option<PipelineHandle>,
}

fn now_unix_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

impl Entry {
    pub fn starting(url: &str, filter: &str, metrics: &Arc<Metrics>) -> Self {
        Self {
            state: State::Starting,
            reason: None,
            url: url.to_string(),
            filter: filter.to_string(),
            since_unix_seconds: now_unix_seconds(),
            metrics: Arc::clone(metrics),
            handle: None,
        }
    }

    fn connected(&self) -> bool {
        self.metrics.connected.get() == 1
    }

    /// Why this pipeline keeps the process from being ready, if it does.
    pub fn not_ready(&self) -> Option<String> {
        match self.state {
            // A fenced pipeline runs elsewhere now: nothing here needs doing.
            State::Stopped | State::Ended | State::Stopping | State::Paused | State::Fenced => None,
            State::Running if self.connected() => None,
            State::Failed => Some(format!(
                "failed: {}",
                self.reason.as_deref().unwrap_or("unknown")
            )),
            State::Starting => Some("starting".to_string()),
            State::Restarting => Some(self.reason.clone().unwrap_or_else(|| "restarting".into())),
            State::Running => {
                let last = self
                    .metrics
                    .last_disconnect
                    .lock()
                    .map(|last| last.clone())
                    .unwrap_or_default();
                Some(if last.is_empty() {
                    "not connected yet".to_string()
                } else {
                    format!("not connected: {last}")
                })
            }
        }
    }

    pub fn describe(&self, name: &str) -> serde_json::Value {
        let metrics = &self.metrics;
        let last_event = metrics.last_event_unix_seconds.get();
        let last_event_age = (last_event > 0)
            .then(|| now_unix_seconds().saturating_sub(u64::try_from(last_event).unwrap_or(0)));
        json!({
            "name": name,
            "state": self.state.label(),
            "reason": self.reason,
            "url": self.url,
            "filter": self.filter,
            "filter_version": self.handle.as_ref().map(|h| *h.version.borrow()),
            "connected": self.connected(),
            "since_unix_seconds": self.since_unix_seconds,
            "last_event_age_seconds": last_event_age,
            "last_acknowledged_event_id": metrics.last_acknowledged_id.lock().map(|id| id.clone()).unwrap_or_default(),
            "events_per_second": metrics.events_per_second.lock().map(|rate| (*rate * 10.0).round() / 10.0).unwrap_or(0.0),
            "records_waiting": metrics.records_waiting(),
            "waiting_for_room": metrics.waiting_for_room.get() == 1,
            "events_received": metrics.events_received.get(),
            "records_written": metrics.records_written.get(),
            "dead_letters": metrics.dead_letters.get(),
            "connections": metrics.connections.get(),
            "filter_swaps": metrics.filter_swaps.get(),
            "filter_rollbacks": metrics.filter_rollbacks.get(),
        })
    }
}
