//! Runs a process's pipelines side by side: each isolated (its own source and filter
//! instances, limits, checkpoint, dead letters, metric labels, state lock), sharing what
//! is free to share (one wasmtime engine, each component compiled once, one admin API).
//!
//! A pipeline that fails stops alone and says why in `/pipelines`; the others go on. A
//! reload ([`Service::reload`]) starts added pipelines, stops removed ones cleanly (drain,
//! checkpoint), restarts changed ones and leaves unchanged ones alone: their connections
//! stay open.

mod components;
mod open_files;
mod report;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

use crate::admin::{self, Pipelines, State};
use crate::config::{FilterSpec, Fingerprint, PipelineConfig, ServiceConfig};
use crate::core::metrics::Metrics;
use crate::pipeline::state_lock::{LockError, StateLock};
use crate::pipeline::{InitialFilter, Pipeline, PipelineEnd, PipelineError};
use crate::sink::SinkSpec;

pub use components::{Components, PRECOMPILED_DIR_VARIABLE};

/// Why a pipeline did not run to a good end.
#[derive(Debug, thiserror::Error)]
pub enum PipelineFailure {
    /// Another process owns its state.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// Its filter cannot be loaded or compiled.
    #[error("{0}")]
    Filter(String),
    /// It ran and failed.
    #[error(transparent)]
    Run(#[from] PipelineError),
}

/// How one pipeline ended.
pub type Outcome = Result<PipelineEnd, PipelineFailure>;

/// A running pipeline, as the service tracks it.
struct Running {
    /// The configuration it runs with, as compared on reload.
    fingerprint: Fingerprint,
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
}

impl Service {
    /// Binds the admin API (if configured) and starts every pipeline.
    pub async fn start(
        config: &ServiceConfig,
        stop_admin: watch::Receiver<bool>,
    ) -> Result<Self, String> {
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
        };
        if let Some(interval) = config.report_interval {
            service.report = Some(report::spawn(interval, service.pipelines.clone()));
        }
        // Listed (as starting) before the API answers, so it never says "no such pipeline"
        // of one that is about to start.
        for pipeline in &config.pipelines {
            service.register(pipeline);
        }
        admin::bind(&config.admin, service.pipelines.clone(), stop_admin)
            .await
            .map_err(|e| e.to_string())?;
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
                Some(new) if new.fingerprint != running.fingerprint => {
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

    /// Waits for the next pipeline to end; none when no pipeline is left running.
    pub async fn next_end(&mut self) -> Option<(String, bool)> {
        let joined = self.tasks.join_next().await?;
        let (name, outcome) = match joined {
            Ok(ended) => ended,
            Err(error) => {
                tracing::error!(%error, "a pipeline task ended abnormally");
                return Some((String::new(), false));
            }
        };
        self.running.remove(&name);
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
            .starting(name, config.url.as_str(), &config.filter.label(), &metrics);
        metrics
    }

    fn launch(&mut self, config: PipelineConfig) {
        let name = config.name.clone();
        let metrics = self.register(&config);
        let (stop_tx, stop_rx) = watch::channel(false);
        self.running.insert(
            name.clone(),
            Running {
                fingerprint: config.fingerprint.clone(),
                stop: stop_tx,
            },
        );
        let components = Arc::clone(&self.components);
        let pipelines = self.pipelines.clone();
        let swaps_over_api = self.swaps_over_api;
        self.tasks.spawn(async move {
            let outcome = run_one(
                &components,
                config,
                metrics,
                stop_rx,
                pipelines,
                swaps_over_api,
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
) -> Outcome {
    // Before compiling or connecting anything: one process per pipeline state.
    let _lock = lock_state(&config)?;
    let (label, component) = components
        .filter(&config.filter)
        .map_err(PipelineFailure::Filter)?;
    let watch_file = match (&config.filter, config.watch) {
        (FilterSpec::File(path), true) => Some((path.clone(), config.filter_config.clone())),
        _ => None,
    };
    let name = config.name.clone();
    tracing::info!(pipeline = %name, url = %config.url, "starting");
    let pipeline = Pipeline {
        config,
        filters: Arc::clone(components.filters()),
        source: components.source().clone(),
        filter: InitialFilter { label, component },
        metrics: Arc::clone(&metrics),
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
        oversized_events = metrics.oversized_events.get(),
        oversized_ids = metrics.oversized_ids.get(),
        connections = metrics.connections.get(),
        duplicates_dropped = metrics.duplicates_dropped.get_label("reconnect")
            + metrics.duplicates_dropped.get_label("restart"),
        dead_letters = metrics.dead_letters.get(),
        filter_swaps = metrics.filter_swaps.get(),
        filter_rollbacks = metrics.filter_rollbacks.get(),
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
