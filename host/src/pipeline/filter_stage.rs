//! The filter stage of a pipeline: the running filter version, live swaps,
//! rollback, and the failure policy.
//!
//! A swap is prepared away from the event path ([`prepare`]: compile, link
//! as the `filter` world, instantiate within the limits, run `init`, handle a
//! probe batch) and installed by the pipeline between two batches
//! ([`FilterStage::install`]), so every event goes through exactly one
//! version and the SSE connection never notices. For its first
//! `rollback_window` batches a new version is on probation: if it fails, the
//! previous version comes back and re-runs the batch. Under
//! `--on-filter-error rollback` the previous version is kept after probation too
//! (one version, as its compiled component: no instance, no memory of its own),
//! so a failure at any time rolls back to it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::config::FilterLimits;
use crate::core::metrics::Metrics;
use crate::wasm::compiled_filters::CompiledFilters;
use crate::wasm::filter::{
    FilterComponent, FilterContext, FilterError, FilterInstance, FilterOutput,
};
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
/// bring back the configured one. It also keeps the version a rollback would restore, so
/// that under `--on-filter-error rollback` a restart does not lose it. A reload that
/// changes the pipeline starts a new slot.
#[derive(Debug, Clone, Default)]
pub struct LiveFilter(Arc<Mutex<Option<Remembered>>>);

/// What [`LiveFilter`] holds: the live version and the one kept for a rollback.
#[derive(Debug, Clone)]
struct Remembered {
    live: VersionSpec,
    previous: Option<VersionSpec>,
}

/// A version without its instance: what it takes to instantiate it again.
#[derive(Debug, Clone)]
struct VersionSpec {
    number: u64,
    label: String,
    component: FilterComponent,
    config: Vec<(String, String)>,
}

impl LiveFilter {
    fn remember(&self, live: &Version, previous: Option<&Previous>) {
        if let Ok(mut remembered) = self.0.lock() {
            *remembered = Some(Remembered {
                live: live.spec(),
                previous: previous.map(|p| p.spec.clone()),
            });
        }
    }

    fn recall(&self) -> Option<Remembered> {
        self.0.lock().ok().and_then(|live| live.clone())
    }

    /// The version that was live (its label and component), if the pipeline ran before.
    pub fn version(&self) -> Option<(String, FilterComponent)> {
        self.recall()
            .map(|remembered| (remembered.live.label, remembered.live.component))
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

impl Version {
    fn spec(&self) -> VersionSpec {
        VersionSpec {
            number: self.number,
            label: self.label.clone(),
            component: self.component.clone(),
            config: self.config.clone(),
        }
    }
}

/// The version a rollback restores. During probation its instance is kept as it ran (a
/// rollback goes on where it left off); after probation only the spec is kept, and a
/// rollback instantiates it afresh, so that keeping it costs no instance memory.
#[derive(Debug)]
struct Previous {
    spec: VersionSpec,
    instance: Option<FilterInstance>,
}

/// What a batch became.
#[derive(Debug, Default)]
pub struct Handled {
    /// What the filter made of it: records for the sink (each with its event, when the
    /// filter's contract names it) and the events it failed one by one.
    pub output: FilterOutput,
    /// Set when the whole batch goes to the dead-letter output instead: the reason.
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
    previous: Option<Previous>,
    probation_left: u32,
    next_number: u64,
    probe: ProbeSample,
    last_probe_refresh: Option<Instant>,
    first_batch_pending: Option<Instant>,
    metrics: Arc<Metrics>,
    live: LiveFilter,
    /// The running version's number, for `/pipelines`: a swap and a rollback change it.
    version: watch::Sender<u64>,
}

impl FilterStage {
    /// Starts with the version `live` remembers from an earlier run of this pipeline in
    /// this process (and, under `--on-filter-error rollback`, the version kept for a
    /// rollback), else with the configured filter as version 1.
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
        let (spec, previous) = match live.recall() {
            Some(was) => (was.live, was.previous),
            None => (
                VersionSpec {
                    number: 1,
                    label,
                    component,
                    config,
                },
                None,
            ),
        };
        // Probation does not outlive a run; only the rollback policy keeps a version past it.
        let previous = previous
            .filter(|_| policy == OnFilterError::Rollback)
            .map(|spec| Previous {
                spec,
                instance: None,
            });
        let VersionSpec {
            number,
            label,
            component,
            config,
        } = spec;
        let instance = component.instantiate(&context, &config, limits).await?;
        let current = Version {
            number,
            label,
            component,
            config,
            instance,
        };
        live.remember(&current, previous.as_ref());
        let (version, _) = watch::channel(number);
        Ok(Self {
            context,
            limits,
            policy,
            rollback_window,
            current,
            previous,
            probation_left: 0,
            next_number: number + 1,
            probe: ProbeSample::default(),
            last_probe_refresh: None,
            first_batch_pending: None,
            metrics,
            live,
            version,
        })
    }

    /// The events new filters are probed with (shared with whoever prepares swaps).
    pub fn probe_sample(&self) -> ProbeSample {
        self.probe.clone()
    }

    /// Follows the running version's number, through swaps and rollbacks.
    pub fn version_watch(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
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
        self.previous = Some(Previous {
            spec: old.spec(),
            instance: Some(old.instance),
        });
        self.live.remember(&self.current, self.previous.as_ref());
        self.version.send_replace(number);
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
            Ok(output) => {
                self.after_success();
                Ok(Handled {
                    output,
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
                self.end_probation();
            }
        }
    }

    /// The new version passed its probation. The previous one goes, unless the policy is
    /// `rollback`: then its spec stays (its instance and memory go) for a later failure.
    fn end_probation(&mut self) {
        let kept = self.policy == OnFilterError::Rollback;
        if kept {
            if let Some(previous) = &mut self.previous {
                previous.instance = None;
            }
        } else {
            self.previous = None;
        }
        tracing::info!(
            pipeline = %self.context.pipeline,
            version = self.current.number,
            previous_version = self.previous.as_ref().map(|p| p.spec.number),
            kept_for_rollback = kept,
            "filter probation ended"
        );
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
            let instance = match previous.instance {
                Some(instance) => instance,
                None => match previous
                    .spec
                    .component
                    .instantiate(&self.context, &previous.spec.config, self.limits)
                    .await
                {
                    Ok(instance) => instance,
                    Err(again) => {
                        tracing::error!(
                            pipeline = %self.context.pipeline,
                            version = previous.spec.number,
                            error = %again,
                            "the previous filter cannot be instantiated: no rollback"
                        );
                        return self.apply_policy(error).await;
                    }
                },
            };
            let VersionSpec {
                number,
                label,
                component,
                config,
            } = previous.spec;
            let restored = Version {
                number,
                label,
                component,
                config,
                instance,
            };
            let failed = std::mem::replace(&mut self.current, restored);
            self.live.remember(&self.current, None);
            self.version.send_replace(self.current.number);
            self.probation_left = 0;
            self.first_batch_pending = None;
            self.metrics.filter_rollbacks.inc();
            tracing::warn!(
                pipeline = %self.context.pipeline,
                failed_version = failed.number,
                restored_version = self.current.number,
                on_probation,
                "rolled back to the previous filter; re-running the batch on it"
            );
            return match self.current.instance.handle(events).await {
                Ok(output) => Ok(Handled {
                    output,
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
            output: FilterOutput::default(),
            dead_letter_reason: Some(format!(
                "filter version {} ({}) failed: {error}",
                self.current.number, self.current.label
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::metrics::Exposition;
    use crate::wasm::components::{builtin_filter, testing_filter_path};
    use crate::wasm::engine::{compile, new_engine};

    const LIMITS: FilterLimits = FilterLimits {
        memory_bytes: 64 * 1024 * 1024,
        cpu_budget: Duration::from_secs(5),
    };

    fn context() -> FilterContext {
        FilterContext {
            pipeline: "test".into(),
            source_url: "http://127.0.0.1/test".into(),
            format: crate::core::format::Format::Raw,
            partition_key: crate::core::partition::KeyStrategy::EventId,
            routable_streams: Vec::new(),
        }
    }

    fn event(data: &str) -> Event {
        Event {
            event_type: "message".into(),
            data: data.into(),
            id: String::new(),
            received_at_ms: 0,
        }
    }

    async fn stage(
        component: FilterComponent,
        policy: OnFilterError,
        live: &LiveFilter,
    ) -> FilterStage {
        let metrics = Metrics::register(&Exposition::default(), "test");
        FilterStage::start(
            "passthrough".into(),
            component,
            Vec::new(),
            context(),
            LIMITS,
            policy,
            1,
            metrics,
            live.clone(),
        )
        .await
        .unwrap()
    }

    /// Swaps `component` in (configured `config`) and runs one good batch: probation over.
    async fn swap_past_probation(
        stage: &mut FilterStage,
        component: &FilterComponent,
        config: &[(&str, &str)],
    ) -> u64 {
        let config: Vec<(String, String)> = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let instance = component
            .instantiate(&context(), &config, LIMITS)
            .await
            .unwrap();
        let number = stage.install(PreparedFilter {
            label: "swapped".into(),
            component: component.clone(),
            config,
            instance,
            requested_at: Instant::now(),
        });
        let handled = stage.handle(&[event("fine")]).await.unwrap();
        assert_eq!(handled.output.records.len(), 1);
        number
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restart_under_the_rollback_policy_still_rolls_back_past_probation() {
        let engine = new_engine(None).unwrap();
        let load = |bytes: &[u8]| {
            FilterComponent::new(&engine, &compile(&engine, bytes, "a filter").unwrap()).unwrap()
        };
        let passthrough = load(builtin_filter("passthrough").unwrap());
        let trap = load(&std::fs::read(testing_filter_path("trap").unwrap()).unwrap());
        for (policy, rolls_back) in [
            (OnFilterError::Rollback, true),
            (OnFilterError::DeadLetter, false),
        ] {
            let live = LiveFilter::default();
            let mut first = stage(passthrough.clone(), policy, &live).await;
            assert_eq!(swap_past_probation(&mut first, &trap, &[]).await, 2);
            drop(first);
            // The same pipeline, restarted in the process: version 2 goes on.
            let mut again = stage(passthrough.clone(), policy, &live).await;
            let versions = again.version_watch();
            assert_eq!(*versions.borrow(), 2);
            let handled = again.handle(&[event("trap")]).await.unwrap();
            if rolls_back {
                assert_eq!(handled.dead_letter_reason, None);
                assert_eq!(handled.output.records.len(), 1, "re-run on version 1");
                assert_eq!(*versions.borrow(), 1);
                assert_eq!(live.recall().map(|r| r.live.number), Some(1));
            } else {
                assert!(handled.dead_letter_reason.is_some(), "{policy:?}");
                assert_eq!(*versions.borrow(), 2);
            }
        }
    }
}
