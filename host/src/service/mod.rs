//! Runs a process's pipelines side by side: each isolated (its own source and filter
//! instances, limits, checkpoint, dead letters, metric labels, state lock), sharing what
//! is free to share (one wasmtime engine, each component compiled once, one admin API).
//!
//! A pipeline that fails stops alone and says why in `/pipelines`; the others go on. One
//! whose failure may pass (a DynamoDB or Kinesis hiccup, a trap of the source) is started
//! again with capped, jittered delays ([`restart`]); one that another owner took over ends
//! quietly (`fenced`). A reload ([`Service::reload`]) starts added pipelines, stops removed ones cleanly (drain,
//! checkpoint), restarts changed ones and leaves unchanged ones alone: their connections
//! stay open.

mod components;
mod open_files;
mod report;
pub mod restart;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::admin::{self, Pipelines, State};
use crate::config::{FilterSpec, PipelineConfig, ServiceConfig};
use crate::core::metrics::Metrics;
use crate::pipeline::filter_stage::LiveFilter;
use crate::pipeline::state_lock::{LockError, StateLock};
use crate::pipeline::{InitialFilter, Pipeline, PipelineEnd, PipelineError};
use crate::sink::SinkSpec;

pub use components::{Components, ComponentsError, PRECOMPILED_DIR_VARIABLE};

/// Why a pipeline did not run to a good end.
#[derive(Debug, thiserror::Error)]
pub enum PipelineFailure {
    /// Another process owns its state.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Its filter cannot be loaded or compiled.
    #[error(transparent)]
    Filter(ComponentsError),
    /// It ran and failed.
    #[error(transparent)]
    Run(#[from] PipelineError),
}

/// Why a process could not start: nothing runs then, and the caller exits with a usage
/// error (the configuration names what is missing or wrong).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The engine or the built-in source could not be set up.
    #[error(transparent)]
    Components(#[from] ComponentsError),
    /// The admin API could not listen where it was told to (address taken, TLS files).
    #[error(transparent)]
    Admin(#[from] admin::BindError),
}

/// How one pipeline ended.
pub type Outcome = Result<PipelineEnd, PipelineFailure>;

/// A running pipeline, as the service tracks it.
struct Running {
    /// The configuration it runs with (compared on reload by its fingerprint).
    config: PipelineConfig,
    /// When this run was launched, to tell a healthy run from a restart loop.
    launched: Instant,
    stop: watch::Sender<bool>,
}

/// The pipelines of one process.
pub struct Service {
    components: Arc<Components>,
    pipelines: Pipelines,
    metrics: HashMap<String, Arc<Metrics>>,
    running: BTreeMap<String, Running>,
    /// Changed pipelines waiting for their old run to end before they start again.
    restarts: BTreeMap<String, PipelineConfig>,
    tasks: JoinSet<(String, Outcome)>,
    ended: Vec<(String, Outcome)>,
    stopping: bool,
    report: Option<tokio::task::JoinHandle<()>>,
    sampler: tokio::task::JoinHandle<()>,
    /// The admin API is on, so filters can be swapped: compile the built-ins ahead.
    swaps_over_api: bool,
    /// Each pipeline's live filter version, carried over an in-process restart.
    live_filters: HashMap<String, LiveFilter>,
    /// Restarts since each pipeline's last healthy run.
    restart_attempts: HashMap<String, u32>,
}

impl Service {
    /// Binds the admin API (if configured) and starts every pipeline.
    pub async fn start(
        config: &ServiceConfig,
        stop_admin: watch::Receiver<bool>,
    ) -> Result<Self, StartError> {
        open_files::raise_for(config.pipelines.len());
        let cache_dir = config
            .pipelines
            .first()
            .map(|pipeline| pipeline.cache_dir.clone());
        let components = Components::new(cache_dir.as_deref())?;
        let pipelines = Pipelines::new(config.redactor.clone());
        let sampler = report::spawn_rate_sampler(pipelines.clone());
        let mut service = Self {
            components: Arc::new(components),
            pipelines,
            metrics: HashMap::new(),
            running: BTreeMap::new(),
            restarts: BTreeMap::new(),
            tasks: JoinSet::new(),
            ended: Vec::new(),
            stopping: false,
            report: None,
            sampler,
            swaps_over_api: config.admin.address.is_some(),
            live_filters: HashMap::new(),
            restart_attempts: HashMap::new(),
        };
        if let Some(interval) = config.report_interval {
            service.report = Some(report::spawn(interval, service.pipelines.clone()));
        }
        // Listed (as starting) before the API answers, so it never says "no such pipeline"
        // of one that is about to start.
        for pipeline in &config.pipelines {
            service.register(pipeline);
        }
        admin::bind(&config.admin, service.pipelines.clone(), stop_admin).await?;
        for pipeline in &config.pipelines {
            service.launch(pipeline.clone());
        }
        Ok(service)
    }

    /// Asks every pipeline to stop: read no more, write what was read.
    pub fn stop_all(&mut self) {
        self.stopping = true;
        self.restarts.clear();
        for running in self.running.values() {
            let _ = running.stop.send(true);
        }
    }

    /// Applies a new set of pipelines: see the module docs.
    pub fn reload(&mut self, config: &ServiceConfig) {
        if self.stopping {
            return;
        }
        let wanted: BTreeMap<&str, &PipelineConfig> = config
            .pipelines
            .iter()
            .map(|pipeline| (pipeline.name.as_str(), pipeline))
            .collect();
        let (mut added, mut removed, mut changed) = (0, 0, 0);
        for (name, running) in &self.running {
            match wanted.get(name.as_str()) {
                None => {
                    tracing::info!(pipeline = %name, "removed from the configuration: stopping");
                    self.pipelines.set_state(name, State::Stopping, None);
                    let _ = running.stop.send(true);
                    self.restarts.remove(name);
                    removed += 1;
                }
                Some(new) if new.fingerprint != running.config.fingerprint => {
                    tracing::info!(pipeline = %name, "changed in the configuration: restarting");
                    self.pipelines.set_state(name, State::Stopping, None);
                    let _ = running.stop.send(true);
                    self.restarts.insert(name.clone(), (*new).clone());
                    changed += 1;
                }
                Some(_) => {}
            }
        }
        for (name, pipeline) in wanted {
            if !self.running.contains_key(name) {
                tracing::info!(pipeline = %name, "added to the configuration: starting");
                self.launch(pipeline.clone());
                added += 1;
            }
        }
        tracing::info!(added, removed, changed, "configuration reloaded");
    }

    /// Waits for the next pipeline to end; none when no pipeline is left running. A
    /// pipeline restarted after a transient failure has not ended: it is restarting, and
    /// comes back as `(name, false)` without an outcome.
    pub async fn next_end(&mut self) -> Option<(String, bool)> {
        let joined = self.tasks.join_next().await?;
        let (name, outcome) = match joined {
            Ok(ended) => ended,
            Err(error) => {
                tracing::error!(%error, "a pipeline task ended abnormally");
                return Some((String::new(), false));
            }
        };
        let run = self.running.remove(&name);
        if let (Err(failure), Some(run)) = (&outcome, &run) {
            // Asked to stop (a signal, a reload): whatever failed, do not start it again.
            let stop_asked =
                self.stopping || *run.stop.borrow() || self.restarts.contains_key(&name);
            match restart::disposition(failure) {
                restart::Disposition::Restart if !stop_asked => {
                    self.restart_later(&name, run, failure);
                    return Some((name, false));
                }
                restart::Disposition::HandedOver => {
                    tracing::warn!(pipeline = %name, reason = %failure, "another owner took the pipeline over: ended here without writing");
                    if let Some(metrics) = self.metrics.get(&name) {
                        metrics.handovers.inc();
                    }
                    self.pipelines
                        .set_state(&name, State::Fenced, Some(failure.to_string()));
                    self.ended.push((name.clone(), outcome));
                    return Some((name, false));
                }
                _ => {}
            }
        }
        let failed = outcome.is_err();
        let (state, reason) = match &outcome {
            Ok(PipelineEnd::Stopped) => (State::Stopped, None),
            Ok(PipelineEnd::EndOfStream) => (State::Ended, Some("the stream ended".to_string())),
            Ok(PipelineEnd::NoContent) => (
                State::Ended,
                Some("the server answered 204: do not reconnect".to_string()),
            ),
            Err(error) => (State::Failed, Some(error.to_string())),
        };
        self.pipelines.set_state(&name, state, reason);
        if let Some(config) = self.restarts.remove(&name) {
            self.launch(config);
        } else {
            self.ended.push((name.clone(), outcome));
        }
        Some((name, failed))
    }

    /// Starts `run`'s pipeline again after the delay its failures so far call for, with the
    /// filter version that was live.
    fn restart_later(&mut self, name: &str, run: &Running, failure: &PipelineFailure) {
        let attempt = if run.launched.elapsed() >= restart::HEALTHY_RUN {
            1
        } else {
            self.restart_attempts.get(name).copied().unwrap_or(0) + 1
        };
        self.restart_attempts.insert(name.to_string(), attempt);
        let delay = restart::delay(attempt);
        if let Some(metrics) = self.metrics.get(name) {
            metrics.restarts.inc();
        }
        let reason = format!(
            "restarting in {:.1} s (attempt {attempt}) after: {failure}",
            delay.as_secs_f64()
        );
        tracing::warn!(
            pipeline = %name,
            attempt,
            delay_ms = delay.as_millis() as u64,
            reason = %self.pipelines.redact(&failure.to_string()),
            "transient failure: restarting the pipeline"
        );
        self.launch_after(run.config.clone(), delay);
        self.pipelines
            .set_state(name, State::Restarting, Some(reason));
    }

    /// The registry the admin API and the live summary read.
    pub fn pipelines(&self) -> Pipelines {
        self.pipelines.clone()
    }

    /// Whether any pipeline is still running (or about to restart).
    pub fn is_running(&self) -> bool {
        !self.running.is_empty() || !self.restarts.is_empty()
    }

    /// How every pipeline that ended for good ended, in the order they ended.
    pub fn into_outcomes(self) -> Vec<(String, Outcome)> {
        if let Some(report) = self.report {
            report.abort();
        }
        self.sampler.abort();
        self.ended
    }

    /// Lists the pipeline as starting, with its metrics (registered once per name).
    fn register(&mut self, config: &PipelineConfig) -> Arc<Metrics> {
        let name = &config.name;
        let metrics = Arc::clone(
            self.metrics
                .entry(name.clone())
                .or_insert_with(|| Metrics::register(self.pipelines.exposition(), name)),
        );
        self.pipelines
            .starting(name, &config.shown_url(), &config.filter.label(), &metrics);
        metrics
    }

    /// Starts a pipeline as configured: a new one, or a changed one (whose filter is the
    /// configured one again, whatever was swapped in before).
    fn launch(&mut self, config: PipelineConfig) {
        self.live_filters
            .insert(config.name.clone(), LiveFilter::default());
        self.restart_attempts.remove(&config.name);
        self.launch_after(config, Duration::ZERO);
    }

    /// Starts a pipeline after `delay`; a stop during the delay ends it as stopped.
    fn launch_after(&mut self, config: PipelineConfig, delay: Duration) {
        let name = config.name.clone();
        let metrics = self.register(&config);
        let (stop_tx, mut stop_rx) = watch::channel(false);
        self.running.insert(
            name.clone(),
            Running {
                config: config.clone(),
                launched: Instant::now() + delay,
                stop: stop_tx,
            },
        );
        let live_filter = self.live_filters.entry(name.clone()).or_default().clone();
        let components = Arc::clone(&self.components);
        let pipelines = self.pipelines.clone();
        let swaps_over_api = self.swaps_over_api;
        self.tasks.spawn(async move {
            if !delay.is_zero() {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = stop_rx.wait_for(|stop| *stop) => return (name, Ok(PipelineEnd::Stopped)),
                }
                pipelines.set_state(&name, State::Starting, None);
            }
            let outcome = run_one(
                &components,
                config,
                metrics,
                stop_rx,
                pipelines,
                swaps_over_api,
                live_filter,
            )
            .await;
            (name, outcome)
        });
    }
}

/// One pipeline from lock to end.
async fn run_one(
    components: &Arc<Components>,
    config: PipelineConfig,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
    pipelines: Pipelines,
    swaps_over_api: bool,
    live_filter: LiveFilter,
) -> Outcome {
    // Before compiling or connecting anything: one process per pipeline state.
    let _lock = lock_state(&config)?;
    // After a restart the live version goes on: the configured file is not read again (it
    // may have changed or gone since a swap replaced it).
    let (label, component) = match live_filter.version() {
        Some(live) => live,
        None => components
            .filter(&config.filter)
            .map_err(PipelineFailure::Filter)?,
    };
    let watch_file = match (&config.filter, config.watch) {
        (FilterSpec::File(path), true) => Some((path.clone(), config.filter_config.clone())),
        _ => None,
    };
    let name = config.name.clone();
    tracing::info!(pipeline = %name, url = %config.shown_url(), "starting");
    let pipeline = Pipeline {
        config,
        filters: Arc::clone(components.filters()),
        source: components.source().clone(),
        filter: InitialFilter { label, component },
        metrics: Arc::clone(&metrics),
        live_filter,
    };
    let (ready_tx, ready_rx) = oneshot::channel::<crate::pipeline::PipelineHandle>();
    let registry = pipelines.clone();
    let compile_ahead = Arc::clone(components);
    tokio::spawn(async move {
        if let Ok(handle) = ready_rx.await {
            if let Some((path, filter_config)) = watch_file
                && let Err(error) =
                    crate::admin::filter_watch::spawn(path, filter_config, handle.clone())
            {
                tracing::error!(%error, "cannot watch the filter file");
            }
            registry.add(handle);
            if swaps_over_api {
                compile_ahead.compile_builtin_filters_ahead();
            }
        }
    });
    let result = pipeline.run(stop, ready_tx).await;
    tracing::info!(
        pipeline = %name,
        events_received = metrics.events_received.get(),
        records_written = metrics.records_written.get(),
        events_filtered_out = metrics.events_filtered_out.get(),
        oversized_events = metrics.oversized_events.get(),
        oversized_ids = metrics.oversized_ids.get(),
        connections = metrics.connections.get(),
        duplicates_dropped = metrics.duplicates_dropped.get_label("reconnect")
            + metrics.duplicates_dropped.get_label("restart"),
        dead_letters = metrics.dead_letters.get(),
        filter_swaps = metrics.filter_swaps.get(),
        filter_rollbacks = metrics.filter_rollbacks.get(),
        restarts = metrics.restarts.get(),
        "finished"
    );
    pipelines.remove_handle(&name);
    Ok(result?)
}

/// Locks the pipeline's state directory, its dead-letter directory and its file-sink
/// directory: opening each repairs what a crash left, which must not touch a live
/// process's files.
fn lock_state(config: &PipelineConfig) -> Result<StateLock, LockError> {
    let mut dirs = vec![config.state_dir.join("pipelines").join(&config.name)];
    let dead_letters = config.dead_letter_dir.join(&config.name);
    // One lock a directory: a second `flock` on it from this process would fail.
    if !dirs.contains(&dead_letters) {
        dirs.push(dead_letters);
    }
    if let SinkSpec::File(dir) = &config.sink {
        dirs.push(dir.join(&config.name));
    }
    StateLock::acquire(&config.name, &dirs)
}
