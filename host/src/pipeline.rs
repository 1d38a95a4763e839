//! One pipeline: source component → bounded queue → filter → sink → checkpoint.
//!
//! The queue between source and filter holds a few batches. When the sink is
//! slow the queue fills, the source's `deliver` waits, the source stops
//! reading, and TCP pushes back on the server: memory stays bounded and
//! nothing is dropped to make room.

use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::checkpoint::{CheckpointError, Checkpoints};
use crate::config::PipelineConfig;
use crate::dedupe::ReplayWindow;
use crate::filter::{FilterComponent, FilterContext, FilterError};
use crate::metrics::Metrics;
use crate::sink::{Sink, SinkError};
use crate::source::{Finish, SourceBatch, SourceComponent, SourceError};

/// Batches the source may have queued ahead of the filter.
const QUEUE_BATCHES: usize = 4;
/// How often a pending checkpoint is written when no batch comes.
const CHECKPOINT_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// How a pipeline ended without failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineEnd {
    /// `--once`: the stream ended and everything was written.
    EndOfStream,
    /// A stop was requested (signal) and everything received was written.
    Stopped,
    /// The server answered 204: it wants no more reconnects.
    NoContent,
}

/// Why a pipeline failed.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// The parts a pipeline runs with.
#[derive(Debug)]
pub struct Pipeline {
    pub config: PipelineConfig,
    pub source: SourceComponent,
    pub filter: FilterComponent,
    pub metrics: Arc<Metrics>,
}

impl Pipeline {
    /// Runs until the stream ends (`--once`), `stop` turns true, or a failure.
    pub async fn run(&self, stop: watch::Receiver<bool>) -> Result<PipelineEnd, PipelineError> {
        let config = &self.config;
        let mut checkpoints = Checkpoints::open(&config.state_dir, &config.name)?;
        let resume_from = checkpoints.load()?;
        if let Some(id) = &resume_from {
            tracing::info!(pipeline = %config.name, last_event_id = %id, "resuming from checkpoint");
        }
        let mut sink = Sink::open(&config.sink, &config.name)?;
        let context = FilterContext {
            pipeline: config.name.clone(),
            source_url: config.url.to_string(),
            format: config.format,
        };
        let mut filter = self
            .filter
            .instantiate(&context, &config.filter_config)
            .await?;

        let (batches_tx, mut batches_rx) = mpsc::channel::<SourceBatch>(QUEUE_BATCHES);
        let source = self.source.clone();
        let source_config = config.clone();
        let metrics = Arc::clone(&self.metrics);
        let source_task = tokio::spawn(async move {
            source
                .run(&source_config, resume_from, batches_tx, stop, metrics)
                .await
        });

        let mut replays = ReplayWindow::new(config.dedupe_window);
        let mut tick = tokio::time::interval(CHECKPOINT_TICK);
        let consumed: Result<(), PipelineError> = async {
            loop {
                let batch = tokio::select! {
                    batch = batches_rx.recv() => match batch {
                        Some(batch) => batch,
                        None => break,
                    },
                    _ = tick.tick() => {
                        checkpoints.write_pending()?;
                        continue;
                    }
                };
                self.process(
                    batch,
                    &mut replays,
                    &mut filter,
                    &mut sink,
                    &mut checkpoints,
                )
                .await?;
            }
            Ok(())
        }
        .await;
        // Closing the queue makes a still-running source's `deliver` fail, so
        // it cannot wait forever on a consumer that gave up.
        drop(batches_rx);
        let source_result = source_task.await;
        consumed?;
        sink.close().await?;
        checkpoints.flush()?;
        let finish = match source_result {
            Ok(result) => result?,
            Err(join_error) => {
                return Err(SourceError::Component(anyhow::anyhow!(
                    "the source task failed: {join_error}"
                ))
                .into());
            }
        };
        Ok(match finish {
            Finish::EndOfStream => PipelineEnd::EndOfStream,
            Finish::StopRequested => PipelineEnd::Stopped,
            Finish::NoContent => PipelineEnd::NoContent,
        })
    }

    /// One batch: drop replays, filter, write, acknowledge.
    async fn process(
        &self,
        mut batch: SourceBatch,
        replays: &mut ReplayWindow,
        filter: &mut crate::filter::FilterInstance,
        sink: &mut Sink,
        checkpoints: &mut Checkpoints,
    ) -> Result<(), PipelineError> {
        if let Some(last) = batch.events.last() {
            let seconds = i64::try_from(last.received_at_ms / 1000).unwrap_or(i64::MAX);
            self.metrics.last_event_unix_seconds.set(seconds);
        }
        let before = batch.events.len();
        batch.events.retain(|event| !replays.is_replay(&event.id));
        let dropped = before - batch.events.len();
        if dropped > 0 {
            self.metrics.duplicates_dropped.add(dropped as u64);
            tracing::info!(pipeline = %self.config.name, dropped, "dropped events the server replayed");
        }
        let records = filter
            .handle(&batch.events)
            .await
            .inspect_err(|_| self.metrics.filter_errors.inc())?;
        sink.write(&records).await?;
        self.metrics.records_written.add(records.len() as u64);
        checkpoints.acknowledge(&batch.last_event_id)?;
        Ok(())
    }
}
