//! The filter stage of a pipeline: the running filter version, live swaps,
//! rollback, and the failure policy.
//!
//! A swap is prepared away from the event path ([`prepare`]: compile, link
//! as the `filter` world, instantiate within the limits, run `init`, handle a
//! probe batch) and installed by the pipeline between two batches
//! ([`FilterStage::install`]), so every event goes through exactly one
//! version and the SSE connection never notices. For its first
//! `rollback_window` batches a new version is on probation: if it fails, the
//! previous version comes back and re-runs the batch.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::FilterLimits;
use crate::core::metrics::Metrics;
use crate::core::record::Record;
use crate::wasm::compiled_filters::CompiledFilters;
use crate::wasm::filter::{FilterComponent, FilterContext, FilterError, FilterInstance};
use crate::wasm::source::Event;

use crate::config::OnFilterError;

/// A validated filter, ready to go live.
#[derive(Debug)]
pub struct PreparedFilter {
    /// Where it came from, for logs (`built-in passthrough`, a file path).
    pub label: String,
    component: FilterComponent,
    config: Vec<(String, String)>,
    instance: FilterInstance,
    /// When the swap was requested, to measure swap latency.
    pub requested_at: Instant,
}

/// The filter version a pipeline runs, kept outside the pipeline so that a restart in the
/// same process (after a transient failure) goes on with the version that was live: a
/// filter swapped in over the API is the operator's choice, and a restart must not quietly
/// bring back the configured one. A reload that changes the pipeline starts a new slot.
#[derive(Debug, Clone, Default)]
pub struct LiveFilter(Arc<Mutex<Option<LiveVersion>>>);

/// What [`LiveFilter`] remembers of a version.
#[derive(Debug, Clone)]
struct LiveVersion {
    number: u64,
    label: String,
    component: FilterComponent,
    config: Vec<(String, String)>,
}

impl LiveFilter {
    fn remember(&self, version: &Version) {
        if let Ok(mut live) = self.0.lock() {
            *live = Some(LiveVersion {
                number: version.number,
                label: version.label.clone(),
                component: version.component.clone(),
                config: version.config.clone(),
            });
        }
    }

    fn recall(&self) -> Option<LiveVersion> {
        self.0.lock().ok().and_then(|live| live.clone())
    }

    /// The version that was live (its label and component), if the pipeline ran before.
    pub fn version(&self) -> Option<(String, FilterComponent)> {
        self.recall().map(|live| (live.label, live.component))
    }
}

/// Events a prepared filter is probed with; refreshed from live traffic.
#[derive(Debug, Clone, Default)]
pub struct ProbeSample(Arc<Mutex<Vec<Event>>>);

impl ProbeSample {
    const SIZE: usize = 8;

    fn events(&self) -> Vec<Event> {
        let mut events = self.0.lock().map(|e| e.clone()).unwrap_or_default();
        // Always include one plain event, so an empty sample still probes.
        events.push(Event {
            event_type: "message".into(),
            data: "{}".into(),
            id: String::new(),
            received_at_ms: 0,
        });
        events
    }

    fn refresh(&self, events: &[Event]) {
        if let Ok(mut sample) = self.0.lock() {
            sample.clear();
            sample.extend(events.iter().take(Self::SIZE).cloned());
        }
    }
}

/// Compiles (or finds compiled) and validates a filter; nothing running is touched.
pub async fn prepare(
    filters: &Arc<CompiledFilters>,
    label: String,
    bytes: Vec<u8>,
    config: Vec<(String, String)>,
    context: &FilterContext,
    limits: FilterLimits,
    probe: &ProbeSample,
) -> Result<PreparedFilter, FilterError> {
    let requested_at = Instant::now();
    let compiler = Arc::clone(filters);
    let component = tokio::task::spawn_blocking(move || compiler.get(&bytes, "the new filter"))
        .await
        .map_err(|e| FilterError::Load(anyhow::anyhow!("compilation task failed: {e}")))??;
    let mut instance = component.instantiate(context, &config, limits).await?;
    instance
        .handle(&probe.events())
        .await
        .map_err(|e| FilterError::Probe(Box::new(e)))?;
    // The probe's state must not leak into live traffic: start fresh.
    let instance = component.instantiate(context, &config, limits).await?;
    Ok(PreparedFilter {
        label,
        component,
        config,
        instance,
        requested_at,
    })
}

/// One running version.
#[derive(Debug)]
struct Version {
    number: u64,
    label: String,
    component: FilterComponent,
    config: Vec<(String, String)>,
    instance: FilterInstance,
}

/// What a batch became.
#[derive(Debug, Default)]
pub struct Handled {
    /// Records for the sink, in order.
    pub records: Vec<Record>,
    /// Set when the batch goes to the dead-letter output instead: the reason.
    pub dead_letter_reason: Option<String>,
}

/// The pipeline's filter state.
#[derive(Debug)]
pub struct FilterStage {
    context: FilterContext,
    limits: FilterLimits,
    policy: OnFilterError,
    rollback_window: u32,
    current: Version,
    previous: Option<Version>,
    probation_left: u32,
    next_number: u64,
    probe: ProbeSample,
    last_probe_refresh: Option<Instant>,
    first_batch_pending: Option<Instant>,
    metrics: Arc<Metrics>,
    live: LiveFilter,
}

impl FilterStage {
    /// Starts with the version `live` remembers from an earlier run of this pipeline in
    /// this process, else with the configured filter as version 1.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        label: String,
        component: FilterComponent,
        config: Vec<(String, String)>,
        context: FilterContext,
        limits: FilterLimits,
        policy: OnFilterError,
        rollback_window: u32,
        metrics: Arc<Metrics>,
        live: LiveFilter,
    ) -> Result<Self, FilterError> {
        let (number, label, component, config) = match live.recall() {
            Some(was) => (was.number, was.label, was.component, was.config),
            None => (1, label, component, config),
        };
        let instance = component.instantiate(&context, &config, limits).await?;
        let current = Version {
            number,
            label,
            component,
            config,
            instance,
        };
        live.remember(&current);
        Ok(Self {
            context,
            limits,
            policy,
            rollback_window,
            current,
            previous: None,
            probation_left: 0,
            next_number: number + 1,
            probe: ProbeSample::default(),
            last_probe_refresh: None,
            first_batch_pending: None,
            metrics,
            live,
        })
    }

    /// The events new filters are probed with (shared with whoever prepares swaps).
    pub fn probe_sample(&self) -> ProbeSample {
        self.probe.clone()
    }

    /// The running version's number.
    pub fn version(&self) -> u64 {
        self.current.number
    }

    /// Puts a prepared filter live, keeping the old one for rollback. Returns its version.
    pub fn install(&mut self, prepared: PreparedFilter) -> u64 {
        let number = self.next_number;
        self.next_number += 1;
        let old = std::mem::replace(
            &mut self.current,
            Version {
                number,
                label: prepared.label,
                component: prepared.component,
                config: prepared.config,
                instance: prepared.instance,
            },
        );
        tracing::info!(
            pipeline = %self.context.pipeline,
            from_version = old.number,
            to_version = number,
            filter = %self.current.label,
            prepared_in_us = prepared.requested_at.elapsed().as_micros() as u64,
            "filter swapped"
        );
        self.previous = Some(old);
        self.live.remember(&self.current);
        self.probation_left = self.rollback_window;
        self.first_batch_pending = Some(prepared.requested_at);
        self.metrics.filter_swaps.inc();
        number
    }

    /// Runs the current version over a batch, applying rollback and the policy.
    pub async fn handle(&mut self, events: &[Event]) -> Result<Handled, FilterError> {
        if self
            .last_probe_refresh
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(1))
        {
            self.probe.refresh(events);
            self.last_probe_refresh = Some(Instant::now());
        }
        match self.current.instance.handle(events).await {
            Ok(records) => {
                self.after_success();
                Ok(Handled {
                    records,
                    dead_letter_reason: None,
                })
            }
            Err(error) => self.recover(events, error).await,
        }
    }

    fn after_success(&mut self) {
        if let Some(requested_at) = self.first_batch_pending.take() {
            tracing::info!(
                pipeline = %self.context.pipeline,
                version = self.current.number,
                swap_latency_us = requested_at.elapsed().as_micros() as u64,
                "first batch on the new filter"
            );
        }
        if self.probation_left > 0 {
            self.probation_left -= 1;
            if self.probation_left == 0 {
                self.previous = None;
            }
        }
    }

    async fn recover(
        &mut self,
        events: &[Event],
        error: FilterError,
    ) -> Result<Handled, FilterError> {
        self.metrics.filter_errors.inc();
        if matches!(
            error,
            FilterError::Trap(_) | FilterError::MemoryLimit { .. }
        ) {
            self.metrics.filter_traps.inc();
        }
        tracing::error!(
            pipeline = %self.context.pipeline,
            version = self.current.number,
            filter = %self.current.label,
            events = events.len(),
            %error,
            "filter failed on a batch"
        );
        let on_probation = self.probation_left > 0;
        let may_roll_back = on_probation || self.policy == OnFilterError::Rollback;
        if may_roll_back && let Some(previous) = self.previous.take() {
            let failed = std::mem::replace(&mut self.current, previous);
            self.live.remember(&self.current);
            self.probation_left = 0;
            self.first_batch_pending = None;
            self.metrics.filter_rollbacks.inc();
            tracing::warn!(
                pipeline = %self.context.pipeline,
                failed_version = failed.number,
                restored_version = self.current.number,
                "rolled back to the previous filter; re-running the batch on it"
            );
            return match self.current.instance.handle(events).await {
                Ok(records) => Ok(Handled {
                    records,
                    dead_letter_reason: None,
                }),
                Err(again) => self.apply_policy(again).await,
            };
        }
        self.apply_policy(error).await
    }

    async fn apply_policy(&mut self, error: FilterError) -> Result<Handled, FilterError> {
        if self.policy == OnFilterError::Stop {
            return Err(error);
        }
        // After a trap an instance must not be entered again: rebuild it.
        self.current.instance = self
            .current
            .component
            .instantiate(&self.context, &self.current.config, self.limits)
            .await?;
        Ok(Handled {
            records: Vec::new(),
            dead_letter_reason: Some(format!(
                "filter version {} ({}) failed: {error}",
                self.current.number, self.current.label
            )),
        })
    }
}
