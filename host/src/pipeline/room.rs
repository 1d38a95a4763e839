//! Waiting for room: what a pipeline does when a write finds a full disk (`ENOSPC`), a
//! used-up quota (`EDQUOT`) or the dead-letter bound reached.
//!
//! It neither fails nor drops anything. The write was cut back to its last whole line (the
//! file sink does that), its batch stays unacknowledged, and the same records are written
//! again with backoff (50 ms, doubling to 1 s) until they fit. Meanwhile the pipeline takes no
//! events: the consumer (or the acknowledgement task, for dead letters) waits here, the
//! source's queue fills, and the source stops reading, so TCP pushes back on the server, as
//! for any slow sink. Failing instead would lose the pipeline's place for nothing (a restart
//! meets the same full disk), and dropping would lose data.
//!
//! An episode is visible: one warning when it starts (pipeline, path, reason), one info line
//! when writing resumes, `sse_ingest_waiting_for_room` at 1 meanwhile, every failed try in
//! `sse_ingest_write_failures_total{reason}`, and `waiting_for_room` in `/pipelines`. A stop
//! request while waiting ends the wait with the error: the records were never acknowledged,
//! so the checkpoint does not cover them and the server sends them again after a restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::core::metrics::Metrics;
use crate::sink::SinkError;

/// The first pause before writing again.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// The longest pause: how late, at most, writing resumes after room comes back.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A pipeline's waits for room (shared by its consumer and its acknowledgement task).
#[derive(Debug)]
pub struct Room {
    pipeline: String,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    /// Writers waiting now; the gauge is 1 while any is.
    waiting: AtomicUsize,
}

impl Room {
    /// The waits of `pipeline`, ended by `stop`.
    pub fn new(pipeline: &str, metrics: Arc<Metrics>, stop: watch::Receiver<bool>) -> Arc<Self> {
        Arc::new(Self {
            pipeline: pipeline.to_string(),
            metrics,
            stop,
            waiting: AtomicUsize::new(0),
        })
    }

    /// A wait for one write; `what` names the output in logs (`records`, `dead letters`).
    /// The writer tries, and after each failure calls [`Wait::failed`], which pauses before
    /// the next try or says to give up:
    ///
    /// ```ignore
    /// let mut wait = room.wait("records");
    /// let ack = loop {
    ///     match sink.submit(records).await {
    ///         Ok(ack) => break wait.done(ack),
    ///         Err(refused) => (records = refused.records, wait.failed(refused.error).await?),
    ///     }
    /// };
    /// ```
    pub fn wait(&self, what: &'static str) -> Wait<'_> {
        Wait {
            room: self,
            what,
            episode: None,
            backoff: FIRST_BACKOFF,
            stop: self.stop.clone(),
        }
    }
}

/// One write's wait for room (see [`Room::wait`]).
#[derive(Debug)]
pub struct Wait<'a> {
    room: &'a Room,
    what: &'static str,
    episode: Option<Episode<'a>>,
    backoff: Duration,
    stop: watch::Receiver<bool>,
}

impl Wait<'_> {
    /// The write succeeded: ends an episode (logged with how long it waited). Returns `value`.
    pub fn done<T>(&mut self, value: T) -> T {
        if let Some(episode) = self.episode.take() {
            tracing::info!(
                pipeline = %self.room.pipeline,
                output = self.what,
                waited_ms = episode.since.elapsed().as_millis() as u64,
                "room again: writing resumed"
            );
        }
        value
    }

    /// The write failed with `error`. For want of room: counted, logged at the start of an
    /// episode, then a pause (50 ms, doubling to 1 s) before the caller tries again. Any other
    /// failure, or one while a stop is requested, is handed back.
    pub async fn failed(&mut self, error: SinkError) -> Result<(), SinkError> {
        let Some(reason) = error.no_room() else {
            return Err(error);
        };
        let room = self.room;
        room.metrics.write_failures.inc_label(reason.label());
        if self.episode.is_none() {
            tracing::warn!(
                pipeline = %room.pipeline,
                output = self.what,
                path = %error.path().map(|p| p.display().to_string()).unwrap_or_default(),
                reason = reason.label(),
                %error,
                "no room to write: taking no events until there is; nothing is dropped"
            );
            self.episode = Some(Episode::start(room));
        }
        if *self.stop.borrow_and_update() {
            return Err(error);
        }
        tokio::select! {
            () = tokio::time::sleep(self.backoff) => {}
            // A closed sender: no stop can come, so just go on waiting for room.
            _ = self.stop.changed() => {}
        }
        self.backoff = next_backoff(self.backoff);
        Ok(())
    }
}

/// The pause after `backoff`: twice as long, at most [`MAX_BACKOFF`].
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// One wait for room, from the first failure to the write that fit (or the give-up).
#[derive(Debug)]
struct Episode<'a> {
    room: &'a Room,
    since: Instant,
}

impl<'a> Episode<'a> {
    fn start(room: &'a Room) -> Self {
        room.waiting.fetch_add(1, Ordering::SeqCst);
        room.metrics.waiting_for_room.set(1);
        Self {
            room,
            since: Instant::now(),
        }
    }
}

impl Drop for Episode<'_> {
    fn drop(&mut self) {
        if self.room.waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.room.metrics.waiting_for_room.set(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::metrics::Exposition;

    fn full_disk() -> SinkError {
        SinkError::File {
            action: "write",
            path: "out/p/x.ndjson.inprogress".into(),
            source: std::io::Error::from_raw_os_error(28),
        }
    }

    #[test]
    fn pauses_double_from_50_ms_up_to_a_second() {
        let mut pauses = vec![FIRST_BACKOFF];
        for _ in 0..6 {
            pauses.push(next_backoff(pauses[pauses.len() - 1]));
        }
        let ms: Vec<u128> = pauses.iter().map(Duration::as_millis).collect();
        assert_eq!(ms, [50, 100, 200, 400, 800, 1000, 1000]);
    }

    #[tokio::test]
    async fn a_full_disk_is_waited_out_with_growing_pauses() -> Result<(), SinkError> {
        let metrics = Metrics::register(&Exposition::default(), "p");
        let (_stop_tx, stop) = watch::channel(false);
        let room = Room::new("p", Arc::clone(&metrics), stop);
        let mut wait = room.wait("records");
        let started = Instant::now();
        for _ in 0..3 {
            wait.failed(full_disk()).await?;
            assert_eq!(metrics.waiting_for_room.get(), 1, "waiting");
        }
        assert!(started.elapsed() >= Duration::from_millis(50 + 100 + 200));
        assert_eq!(wait.done(7), 7);
        assert_eq!(metrics.write_failures.get_label("disk_full"), 3);
        assert_eq!(metrics.waiting_for_room.get(), 0, "not waiting any more");
        Ok(())
    }

    #[tokio::test]
    async fn other_failures_are_handed_back_at_once_and_a_stop_ends_the_wait() {
        let metrics = Metrics::register(&Exposition::default(), "p");
        let (stop_tx, stop) = watch::channel(false);
        let room = Room::new("p", Arc::clone(&metrics), stop);
        let denied = SinkError::File {
            action: "write",
            path: "x".into(),
            source: std::io::Error::from_raw_os_error(13),
        };
        let outcome = room.wait("records").failed(denied).await;
        assert!(outcome.is_err_and(|error| error.no_room().is_none()));
        assert_eq!(metrics.waiting_for_room.get(), 0);
        stop_tx.send_replace(true);
        let mut wait = room.wait("dead letters");
        let outcome = wait.failed(full_disk()).await;
        assert!(outcome.is_err_and(|error| error.no_room().is_some()));
        drop(wait);
        assert_eq!(metrics.waiting_for_room.get(), 0, "a wait given up ends");
    }
}
