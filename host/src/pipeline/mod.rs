//! One pipeline: source component → bounded queue → filter → sink → checkpoint.
//!
//! The queue between source and filter holds a few batches. When the sink is
//! slow the queue fills, the source's `deliver` waits, the source stops
//! reading, and TCP pushes back on the server: memory stays bounded and
//! nothing is dropped to make room. A full disk or a full dead-letter output
//! pushes back the same way (`room`). Filter swaps arrive on their own channel
//! and are installed between two batches. The file sink's open file (and the
//! dead letters') is rolled at its deadline even when no batch comes, so a
//! quiet stream's records are finished within the roll interval.

pub mod checkpoint;
pub mod dead_letter;
pub mod filter_stage;
pub mod replay;
pub mod room;
pub mod state_lock;
pub mod stream_rule;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::config::FilterLimits;
use crate::config::PipelineConfig;
use crate::core::blocking::{Offloaded, offload};
use crate::core::metrics::Metrics;
use crate::core::record::Record;
use crate::pipeline::checkpoint::{
    CheckpointError, Checkpoints, Resume, StreamIdentity, open_store,
};
use crate::pipeline::dead_letter::DeadLetters;
use crate::pipeline::filter_stage::{FilterStage, LiveFilter, PreparedFilter, ProbeSample};
use crate::pipeline::replay::{ReplayCause, ReplayWindow};
use crate::pipeline::room::Room;
use crate::pipeline::stream_rule::StreamRule;
use crate::sink::{Ack, CloseBound, Sink, SinkError};
use crate::wasm::compiled_filters::CompiledFilters;
use crate::wasm::filter::{FilterComponent, FilterContext, FilterError};
use crate::wasm::source::{Finish, SourceBatch, SourceComponent, SourceControl, SourceError};

/// Batches the source may have queued ahead of the filter.
const QUEUE_BATCHES: usize = 4;
/// The shortest period of the tick that writes a pending checkpoint when no batch comes.
const MIN_CHECKPOINT_TICK: Duration = Duration::from_millis(10);

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
    /// The source component failed or the stream cannot go on.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The filter failed and the policy says stop (or it refused its configuration).
    #[error(transparent)]
    Filter(#[from] FilterError),
    /// The sink cannot write.
    #[error(transparent)]
    Sink(#[from] SinkError),
    /// The checkpoint cannot be read or written.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// Records were still undelivered at the shutdown deadline (they are dead letters).
    #[error("shutdown timed out with {0} records undelivered; they are in the dead-letter output")]
    Undelivered(usize),
    /// The end-of-stream drain gave up: nothing was acknowledged for the stall bound.
    #[error(
        "the drain stalled: no record was acknowledged for {} ms (--drain-stall-timeout-ms); {undelivered} records undelivered, they are in the dead-letter output",
        stall.as_millis()
    )]
    DrainStalled {
        /// Records left undelivered (dead letters).
        undelivered: usize,
        /// The stall bound.
        stall: Duration,
    },
    /// One of the pipeline's tasks panicked or was cancelled: a bug, reported as such.
    #[error("the pipeline's {task} task failed (a bug; please report it): {reason}")]
    Task {
        /// Which task (`source`, `acknowledgement`).
        task: &'static str,
        /// What the runtime said.
        reason: String,
    },
    /// The checkpoint belongs to another stream and `--resume require` was given.
    #[error("not starting: {0}")]
    Resume(String),
}

/// A request to put a prepared filter live; answered with its version.
#[derive(Debug)]
pub struct SwapRequest {
    /// The validated filter.
    pub filter: PreparedFilter,
    /// Told the version number the filter went live as.
    pub reply: oneshot::Sender<u64>,
}

/// What the admin API needs to reach a running pipeline.
#[derive(Debug, Clone)]
pub struct PipelineHandle {
    /// The pipeline's name.
    pub name: String,
    /// Compiles a new filter (or finds it compiled).
    pub filters: Arc<CompiledFilters>,
    /// What a new filter is told about the pipeline.
    pub context: FilterContext,
    /// The sandbox of a new filter.
    pub limits: FilterLimits,
    /// Recent events, for a new filter's probe batch.
    pub probe: ProbeSample,
    /// Where swaps go; the pipeline installs them between batches.
    pub swaps: mpsc::Sender<SwapRequest>,
    /// The running filter's version.
    pub version: watch::Receiver<u64>,
    /// True pauses reading (TCP pushes back on the server); false resumes.
    pub pause: Arc<watch::Sender<bool>>,
}

/// The filter a pipeline starts with.
#[derive(Debug)]
pub struct InitialFilter {
    /// How logs name it (`built-in filter `x`` or the file).
    pub label: String,
    /// The compiled, linked component.
    pub component: FilterComponent,
}

/// The parts a pipeline runs with.
#[derive(Debug)]
pub struct Pipeline {
    /// Its validated configuration.
    pub config: PipelineConfig,
    /// Compiles a new filter (or finds it compiled), on the engine its components run on.
    pub filters: Arc<CompiledFilters>,
    /// The source component, linked.
    pub source: SourceComponent,
    /// The filter it starts with.
    pub filter: InitialFilter,
    /// Its metrics, registered in the process's exposition.
    pub metrics: Arc<Metrics>,
    /// The filter version that was live when this pipeline last ran in this process.
    pub live_filter: LiveFilter,
}

impl Pipeline {
    /// The filter context of this pipeline.
    pub fn filter_context(&self) -> FilterContext {
        FilterContext {
            pipeline: self.config.name.clone(),
            // Filters see the URL as it is shown, never its credentials.
            source_url: self.config.shown_url(),
            format: self.config.format,
            partition_key: self.config.partition_key.clone(),
            routable_streams: self.config.routable_streams(),
        }
    }

    /// Runs until the stream ends (`--once`), `stop` turns true, or a failure.
    /// `ready` receives the handle for swaps once the pipeline runs.
    pub async fn run(
        self,
        stop: watch::Receiver<bool>,
        ready: oneshot::Sender<PipelineHandle>,
    ) -> Result<PipelineEnd, PipelineError> {
        let config = &self.config;
        // A header whose value came from a secret reference is a credential, whatever its name.
        let public_headers: Vec<(String, String)> = config
            .headers
            .iter()
            .filter(|(_, value)| !config.secrets.is_secret(value))
            .cloned()
            .collect();
        let mut store = open_store(
            &config.checkpoint_store,
            &config.state_dir,
            &config.name,
            &self.metrics,
        )
        .await?;
        let stream_key = store.stream_key().await?;
        let stream = StreamIdentity::of(
            &config.url,
            &config.shown_url(),
            &public_headers,
            &stream_key,
        );
        let mut checkpoints = Checkpoints::new(store, stream.clone(), config.checkpoint_interval);
        let found = checkpoints.claim().await?.map(|mut found| {
            found.stream = found.stream.map(|stream| stream.upgraded(&stream_key));
            found
        });
        let resume_from = match Resume::decide(config.resume, found, &stream) {
            Resume::From(id) => {
                tracing::info!(pipeline = %config.name, last_event_id = %id, "resuming from checkpoint");
                Some(id)
            }
            Resume::LiveEdge(None) => None,
            Resume::LiveEdge(Some(why)) => {
                tracing::warn!(pipeline = %config.name, reason = %why, "not resuming from the checkpoint: starting from the live edge");
                None
            }
            Resume::Refuse(why) => return Err(PipelineError::Resume(why)),
        };
        let streams = StreamRule::new(&config.sink, &config.allowed_streams);
        let mut replays = match &resume_from {
            Some(id) => ReplayWindow::resuming_after(config.dedupe_window, id),
            None => ReplayWindow::new(config.dedupe_window),
        };
        let mut sink = Sink::open(
            &config.sink,
            &config.name,
            &config.partition_key,
            config.file_roll,
        )
        .await?;
        if let Sink::Kinesis(kinesis) = &sink {
            self.metrics.watch_kinesis(kinesis.stats_reader());
        }
        let dead_letters = {
            let (dir, name) = (config.dead_letter_dir.clone(), config.name.clone());
            let (roll, max_bytes) = (config.file_roll, config.dead_letter_max_bytes);
            Offloaded::new(offload(move || DeadLetters::open(&dir, &name, roll, max_bytes)).await?)
        };
        let room = Room::new(&config.name, Arc::clone(&self.metrics), stop.clone());
        let context = self.filter_context();
        let mut stage = FilterStage::start(
            self.filter.label.clone(),
            self.filter.component.clone(),
            config.filter_config.clone(),
            context.clone(),
            config.filter_limits,
            config.on_filter_error,
            config.rollback_batches,
            Arc::clone(&self.metrics),
            self.live_filter.clone(),
        )
        .await?;

        let (swaps_tx, mut swaps_rx) = mpsc::channel::<SwapRequest>(4);
        let version_rx = stage.version_watch();
        let (pause_tx, pause_rx) = watch::channel(false);
        let _ = ready.send(PipelineHandle {
            name: config.name.clone(),
            filters: Arc::clone(&self.filters),
            context,
            limits: config.filter_limits,
            probe: stage.probe_sample(),
            swaps: swaps_tx,
            version: version_rx,
            pause: Arc::new(pause_tx),
        });

        // The shutdown timeout counts from the stop request, not from the end of the
        // consumer loop, which a full Kinesis buffer could hold up indefinitely.
        let shutdown_clock = sink.shutdown_clock().map(|clock| {
            tokio::spawn(start_shutdown_clock_on_stop(
                stop.clone(),
                clock,
                config.shutdown_timeout,
            ))
        });

        // The source stops on the process's stop request, and also when this pipeline ends
        // first (a fenced checkpoint, a sink failure): an idle stream would otherwise keep
        // its connection, and this run waiting on it, until its next event.
        let (halt_tx, halt) = watch::channel(false);
        let halt_tx = Arc::new(halt_tx);
        let forward_stop = {
            let (mut stop, halt_tx) = (stop.clone(), Arc::clone(&halt_tx));
            tokio::spawn(async move {
                // A dropped sender is a stop too.
                let _ = stop.wait_for(|stopped| *stopped).await;
                halt_tx.send_replace(true);
            })
        };
        let (batches_tx, mut batches_rx) = mpsc::channel::<SourceBatch>(QUEUE_BATCHES);
        let stop_requested = stop.clone();
        let source = self.source.clone();
        let source_config = config.clone();
        let metrics = Arc::clone(&self.metrics);
        let source_task = tokio::spawn(async move {
            source
                .run(
                    &source_config,
                    resume_from,
                    batches_tx,
                    SourceControl {
                        stop: halt,
                        pause: pause_rx,
                    },
                    metrics,
                )
                .await
        });

        // Acknowledgements settle in order on their own task, which owns the
        // checkpoint and the dead letters: the consumer never waits for Kinesis.
        let (acks_tx, acks_rx) = mpsc::channel::<Settle>(ACKS_IN_FLIGHT);
        let acker = tokio::spawn(settle_in_order(
            acks_rx,
            checkpoints,
            config.checkpoint_interval,
            dead_letters,
            Arc::clone(&room),
            Arc::clone(&self.metrics),
        ));

        let consumed: Result<(), PipelineError> = async {
            loop {
                tokio::select! {
                    // Swaps first: a swap requested before a batch applies to it.
                    biased;
                    // The acknowledgement task ended early (a fenced checkpoint): stop here.
                    () = acks_tx.closed() => break,
                    Some(swap) = swaps_rx.recv() => {
                        let version = stage.install(swap.filter);
                        let _ = swap.reply.send(version);
                    }
                    () = sleep_until_or_never(sink.roll_deadline()) => sink.roll_if_due().await?,
                    batch = batches_rx.recv() => match batch {
                        Some(batch) => {
                            let settle = self.process(batch, &mut replays, &streams, &mut stage, &mut sink, &room).await?;
                            if acks_tx.send(settle).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
            Ok(())
        }
        .await;
        // Closing the queue makes a still-running source's `deliver` fail, so
        // it cannot wait forever on a consumer that gave up; the halt ends a quiet one.
        drop(batches_rx);
        halt_tx.send_replace(true);
        forward_stop.abort();
        let source_result = source_task.await;
        // A stop is bounded by the shutdown timeout (its clock started at the request); the
        // end of a stream waits as long as the sink takes records, and the clock stays on so
        // that a signal during that drain bounds it too.
        let bound = if *stop_requested.borrow() {
            CloseBound::Timeout(config.shutdown_timeout)
        } else {
            if matches!(sink, Sink::Kinesis(_)) {
                tracing::info!(
                    pipeline = %config.name,
                    stall_timeout_ms = config.drain_stall_timeout.as_millis() as u64,
                    "end of stream: delivering what is buffered"
                );
            }
            CloseBound::WhileProgressing {
                stall: config.drain_stall_timeout,
            }
        };
        let closed = sink.close(bound).await;
        if let Some(clock) = shutdown_clock {
            clock.abort();
        }
        drop(acks_tx);
        let settled = match acker.await {
            Ok(result) => result,
            Err(join_error) => {
                return Err(PipelineError::Task {
                    task: "acknowledgement",
                    reason: join_error.to_string(),
                });
            }
        };
        consumed?;
        settled?;
        let closed = closed?;
        if let Some(stall) = closed.stalled {
            self.metrics.drain_stalls.inc();
            tracing::error!(
                pipeline = %config.name,
                undelivered = closed.undelivered,
                stall_ms = stall.as_millis() as u64,
                "the drain stalled; what was left is in the dead-letter output"
            );
            return Err(PipelineError::DrainStalled {
                undelivered: closed.undelivered,
                stall,
            });
        }
        if closed.undelivered > 0 {
            return Err(PipelineError::Undelivered(closed.undelivered));
        }
        let finish = match source_result {
            Ok(result) => result?,
            Err(join_error) => {
                return Err(PipelineError::Task {
                    task: "source",
                    reason: join_error.to_string(),
                });
            }
        };
        Ok(match finish {
            Finish::EndOfStream => PipelineEnd::EndOfStream,
            Finish::StopRequested => PipelineEnd::Stopped,
            Finish::NoContent => PipelineEnd::NoContent,
        })
    }

    /// One batch: drop replays, filter, submit to the sink. Returns what the
    /// acknowledgement task needs to settle it.
    async fn process(
        &self,
        mut batch: SourceBatch,
        replays: &mut ReplayWindow,
        streams: &StreamRule,
        stage: &mut FilterStage,
        sink: &mut Sink,
        room: &Room,
    ) -> Result<Settle, PipelineError> {
        if let Some(last) = batch.events.last() {
            let seconds = i64::try_from(last.received_at_ms / 1000).unwrap_or(i64::MAX);
            self.metrics.last_event_unix_seconds.set(seconds);
        }
        let connection = batch.connection;
        let mut dropped: Option<(ReplayCause, u64)> = None;
        batch
            .events
            .retain(|event| match replays.check(connection, &event.id) {
                Some(cause) => {
                    let count = dropped.map_or(0, |(_, n)| n);
                    dropped = Some((cause, count + 1));
                    false
                }
                None => true,
            });
        if let Some((cause, count)) = dropped {
            self.metrics
                .duplicates_dropped
                .add_label(cause.label(), count);
            tracing::info!(pipeline = %self.config.name, dropped = count, cause = cause.label(), "dropped events the server replayed");
        }
        let handled = stage.handle(&batch.events).await?;
        let given = batch.events.len() as u64;
        self.metrics.events_delivered.add(given);
        let output = handled.output;
        let mut failed_events = Vec::new();
        if let Some(reason) = handled.dead_letter_reason {
            failed_events.push((std::mem::take(&mut batch.events), reason));
        } else {
            self.metrics.events_filtered_out.add(output.filtered_out);
            for (index, reason) in output.failed {
                if let Some(event) = batch.events.get(index as usize) {
                    self.metrics.filter_event_failures.inc();
                    tracing::warn!(pipeline = %self.config.name, event_id = %event.id, %reason, "the filter failed an event: dead-lettered, the rest of the batch goes on");
                    failed_events.push((vec![event.clone()], reason));
                }
            }
        }
        let with_origins = output
            .records
            .into_iter()
            .zip(output.origins.into_iter().chain(std::iter::repeat(None)))
            .collect();
        let (records, refused) = streams.split(with_origins);
        let refused_records = refused
            .into_iter()
            .map(|(record, origin, reason)| {
                let event = origin.and_then(|i| batch.events.get(i as usize).cloned());
                (record, reason, event)
            })
            .collect();
        let mut wait = room.wait("records");
        let mut records = records;
        let ack = loop {
            match sink.submit(records).await {
                Ok(ack) => break wait.done(ack),
                Err(refused) => {
                    records = refused.records;
                    wait.failed(refused.error).await?;
                }
            }
        };
        Ok(Settle {
            ack,
            failed_events,
            refused_records,
            last_event_id: batch.last_event_id,
        })
    }
}

/// Sleeps until `deadline`, or forever when there is none.
async fn sleep_until_or_never(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Acknowledgements a pipeline may have outstanding (each up to a batch of records);
/// past this the consumer waits, which in turn stops the source.
const ACKS_IN_FLIGHT: usize = 64;

/// Waits for the stop request, then gives the sink `timeout` to deliver or dead-letter
/// everything it holds or is still handed.
async fn start_shutdown_clock_on_stop(
    mut stop: watch::Receiver<bool>,
    clock: crate::sink::ShutdownClock,
    timeout: Duration,
) {
    // An error means the sender is gone: no stop will come.
    if stop.wait_for(|stopped| *stopped).await.is_ok() {
        tracing::info!(
            timeout_ms = timeout.as_millis() as u64,
            "stop requested: delivering what was read"
        );
        clock.stop_by(tokio::time::Instant::now() + timeout);
    }
}

/// One batch on its way to acknowledgement.
#[derive(Debug)]
struct Settle {
    ack: Ack,
    /// Events to dead-letter, in groups that share a reason: the whole batch when the
    /// filter failed it, one event when the filter failed just that one.
    failed_events: Vec<(Vec<crate::wasm::source::Event>, String)>,
    /// Records the stream rule kept from the sink, with the reason and their event (when
    /// the filter's contract names it).
    refused_records: Vec<(Record, String, Option<crate::wasm::source::Event>)>,
    last_event_id: String,
}

/// Settles batches in order: writes dead letters, counts, moves the checkpoint.
async fn settle_in_order(
    mut acks: mpsc::Receiver<Settle>,
    mut checkpoints: Checkpoints,
    checkpoint_interval: Duration,
    dead_letters: Offloaded<DeadLetters>,
    room: Arc<Room>,
    metrics: Arc<Metrics>,
) -> Result<(), PipelineError> {
    let mut tick = tokio::time::interval(checkpoint_interval.max(MIN_CHECKPOINT_TICK));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut checkpoint_room = CheckpointRoom::default();
    let dead = DeadLetterWriter {
        letters: &dead_letters,
        room: &room,
        metrics: &metrics,
    };
    let mut dead_roll_at: Option<Instant> = None;
    let mut fencing = checkpoints.fencing();
    loop {
        let settle = tokio::select! {
            // The heartbeat found the checkpoint taken over: the same end as a refused write.
            fenced = async {
                match fencing.as_mut() {
                    Some(fencing) => fencing.fenced().await,
                    None => std::future::pending().await,
                }
            } => return Err(fenced.into()),
            settle = acks.recv() => match settle {
                Some(settle) => settle,
                None => break,
            },
            _ = tick.tick() => {
                if checkpoints.has_pending() {
                    write_checkpoint(&mut checkpoints, &metrics, &mut checkpoint_room).await?;
                }
                continue;
            }
            () = sleep_until_or_never(dead_roll_at) => {
                dead_roll_at = dead_letters.run(DeadLetters::roll_if_due).await?;
                continue;
            }
        };
        for (events, reason) in settle.failed_events {
            dead_roll_at = dead
                .write((events, reason), |letters, (events, reason), metrics| {
                    letters.write_events(events, reason, metrics)
                })
                .await?;
        }
        if let Some((_, reason, _)) = settle.refused_records.first() {
            tracing::warn!(records = settle.refused_records.len(), %reason, "records dead-lettered");
            dead_roll_at = dead
                .write(settle.refused_records, |letters, refused, metrics| {
                    letters.write_records(refused, metrics)
                })
                .await?;
        }
        let outcome = settle.ack.settled().await?;
        if !outcome.dead_letters.is_empty() {
            let letters: Vec<(Record, String, Option<crate::wasm::source::Event>)> = outcome
                .dead_letters
                .into_iter()
                .map(|letter| {
                    tracing::warn!(reason = %letter.reason, "record dead-lettered");
                    (
                        Record {
                            data: letter.record.data,
                            partition_key: Some(letter.record.partition_key),
                            stream: letter.record.stream,
                        },
                        letter.reason,
                        None,
                    )
                })
                .collect();
            dead_roll_at = dead
                .write(letters, |dead, letters, metrics| {
                    dead.write_records(letters, metrics)
                })
                .await?;
        }
        metrics.records_written.add(outcome.acked as u64);
        if let Ok(mut last) = metrics.last_acknowledged_id.lock() {
            last.clone_from(&settle.last_event_id);
        }
        if checkpoints.acknowledge(&settle.last_event_id) {
            write_checkpoint(&mut checkpoints, &metrics, &mut checkpoint_room).await?;
        }
    }
    dead_letters.run(DeadLetters::close).await?;
    if let Err(error) = checkpoints.flush().await {
        metrics.checkpoint_write_failures.inc();
        if let Some(reason) = error.no_room() {
            metrics.write_failures.inc_label(reason.label());
        }
        return Err(error.into());
    }
    Ok(())
}

/// Writes dead letters, waiting for room (a full disk, the dead-letter bound) as long as it
/// takes: dead letters are data, never dropped.
struct DeadLetterWriter<'a> {
    letters: &'a Offloaded<DeadLetters>,
    room: &'a Room,
    metrics: &'a Arc<Metrics>,
}

impl DeadLetterWriter<'_> {
    /// Writes `batch` with `write`; returns when the open file is due to be rolled.
    async fn write<B: Send + 'static>(
        &self,
        batch: B,
        write: fn(&mut DeadLetters, &B, &Metrics) -> Result<(), crate::sink::SinkError>,
    ) -> Result<Option<Instant>, crate::sink::SinkError> {
        let mut wait = self.room.wait("dead letters");
        let mut batch = batch;
        loop {
            let metrics = Arc::clone(self.metrics);
            let written = self
                .letters
                .run(move |letters| match write(letters, &batch, &metrics) {
                    Ok(()) => Ok(letters.roll_deadline()),
                    Err(error) => Err((error, batch)),
                })
                .await;
            match written {
                Ok(deadline) => return Ok(wait.done(deadline)),
                Err((error, back)) => {
                    batch = back;
                    wait.failed(error).await?;
                }
            }
        }
    }
}

/// Whether the checkpoint is waiting for room, so that an episode logs once.
#[derive(Debug, Default)]
struct CheckpointRoom {
    since: Option<Instant>,
}

/// Writes the pending checkpoint. A transient failure (a DynamoDB timeout, throttling) is
/// logged and counted, and the checkpoint stays pending for the next tick; so does a file
/// checkpoint on a full disk (logged once until it is written again), which never claims a
/// position it could not store. Any other failure (a fenced writer) stops the pipeline.
async fn write_checkpoint(
    checkpoints: &mut Checkpoints,
    metrics: &Metrics,
    room: &mut CheckpointRoom,
) -> Result<(), PipelineError> {
    match checkpoints.write_pending().await {
        Ok(()) => {
            if let Some(since) = room.since.take() {
                tracing::info!(
                    waited_ms = since.elapsed().as_millis() as u64,
                    "room again: checkpoint written"
                );
            }
            Ok(())
        }
        Err(error) => {
            metrics.checkpoint_write_failures.inc();
            if let Some(reason) = error.no_room() {
                metrics.write_failures.inc_label(reason.label());
                if room.since.is_none() {
                    room.since = Some(Instant::now());
                    tracing::warn!(%error, reason = reason.label(), "no room for the checkpoint: it stays where it was and is tried again on each tick");
                }
                Ok(())
            } else if error.is_transient() {
                tracing::warn!(%error, "checkpoint not written: trying again on the next tick");
                Ok(())
            } else {
                Err(error.into())
            }
        }
    }
}
