//! The host side of filters: sandboxed, swappable event handlers.
//!
//! Two contracts load side by side: the public `sse-ingest:filter@0.2.0`
//! (`wit/filter/filter.wit`, [`v02`]), whose `handle` returns its outputs as a value that
//! names each output's event, and the older `sse-ingest:pipeline@0.1.0` filter world
//! ([`v01`]), adapted so that components built against it behave as before. Which one a
//! component is, its exports say (`configure` or `init`). Both run in the same sandbox
//! ([`state`], `wasm::sandbox`).

mod config_value;
pub mod shape;
mod state;
mod v01;
pub mod v02;

use wasmtime::component::Component;
use wasmtime::{Engine, Store};

use crate::core::format::Format;
use crate::core::record::Record;
use crate::wasm::sandbox::OverBudget;
use crate::wasm::source::Event;
use state::FilterState;
use v01::{V01Component, V01Instance};
use v02::{V02Component, V02Instance};

use crate::config::FilterLimits;

/// What a filter made of one batch.
#[derive(Debug, Default)]
pub struct FilterOutput {
    /// Records for the sink, in order.
    pub records: Vec<Record>,
    /// For each record, the index in the batch of the event it was made from; `None` for
    /// a 0.1 filter, whose records name no event.
    pub origins: Vec<Option<u32>>,
    /// Events the filter failed one by one (a 0.2 `event` error), with its reasons: they go
    /// to the dead letters while the rest of the batch goes on.
    pub failed: Vec<(u32, String)>,
    /// Events the filter made no record of.
    pub filtered_out: u64,
    /// Whether `filtered_out` is exact (0.2), or estimated as events minus records (0.1).
    pub exact: bool,
}

/// Why a filter could not be used or failed on a batch.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// The component does not link or instantiate as a filter.
    #[error("not a usable filter component: {0:#}")]
    Load(anyhow::Error),
    /// `init` refused the configuration.
    #[error("the filter refused its configuration: {0}")]
    Init(String),
    /// `handle` returned an error for a batch.
    #[error("the filter failed on a batch: {0}")]
    Batch(String),
    /// The filter failed on the probe batch of a swap.
    #[error("the filter failed on its probe batch: {0}")]
    Probe(Box<FilterError>),
    /// The filter trapped (a panic, its CPU budget).
    #[error("the filter trapped: {}", describe_trap(.0))]
    Trap(anyhow::Error),
    /// The filter needed more memory than its limit (the limiter refused to grow it).
    #[error(
        "the filter exceeded its memory limit: it asked for {desired} bytes, the limit is \
         {limit} bytes (--filter-memory-mib)"
    )]
    MemoryLimit {
        /// The memory size it asked for, all its memories together.
        desired: usize,
        /// Its limit.
        limit: usize,
    },
    /// The filter put more records or bytes in one batch than its budget.
    #[error("the filter exceeded its output budget: {0}")]
    OutputBudget(OverBudget),
}

/// Names the common traps in words an operator understands.
fn describe_trap(error: &anyhow::Error) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => "it exceeded its CPU budget per call".to_string(),
        Some(wasmtime::Trap::UnreachableCodeReached) => {
            format!("it panicked or hit `unreachable` ({error:#})")
        }
        _ => format!("{error:#}"),
    }
}

/// A filter component linked and ready to instantiate, of either contract.
#[derive(Clone)]
pub struct FilterComponent(Linked);

#[derive(Clone)]
enum Linked {
    V01(V01Component),
    V02(V02Component),
}

impl std::fmt::Debug for FilterComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterComponent")
            .field("contract", &self.contract())
            .finish_non_exhaustive()
    }
}

impl FilterComponent {
    /// Links a compiled component as a filter. Fails if it is of another world
    /// or imports a capability filters do not get.
    pub fn new(engine: &Engine, component: &Component) -> Result<Self, FilterError> {
        check_imports(engine, component)?;
        Ok(Self(if v01::is_v01(engine, component) {
            Linked::V01(V01Component::new(engine, component)?)
        } else {
            Linked::V02(V02Component::new(engine, component)?)
        }))
    }

    /// The contract the component was built against, e.g. `sse-ingest:filter@0.2.0`.
    pub fn contract(&self) -> &'static str {
        match &self.0 {
            Linked::V01(_) => "sse-ingest:pipeline@0.1.0",
            Linked::V02(_) => "sse-ingest:filter@0.2.0",
        }
    }

    /// Instantiates the filter within `limits` and configures it.
    pub async fn instantiate(
        &self,
        context: &FilterContext,
        config: &[(String, String)],
        limits: FilterLimits,
    ) -> Result<FilterInstance, FilterError> {
        let engine = match &self.0 {
            Linked::V01(linked) => linked.engine(),
            Linked::V02(linked) => linked.engine(),
        };
        let state = FilterState::new(
            &context.pipeline,
            limits.memory_bytes,
            crate::wasm::engine::ticks(limits.cpu_budget),
        );
        let mut store = Store::new(engine, state);
        store.limiter(|state| &mut state.limits);
        // One call hands the host at most what the filter's memory can hold: wasmtime
        // counts the host's bytes of every list and string it lifts, a returned batch
        // of outputs included.
        store.set_hostcall_fuel(limits.memory_bytes);
        // At each epoch tick the filter yields to the runtime; past its budget a call traps.
        // The budget is renewed before each call.
        store.epoch_deadline_callback(|mut store| store.data_mut().cpu.tick());
        store.set_epoch_deadline(1);
        Ok(FilterInstance(match &self.0 {
            Linked::V01(linked) => Running::V01(linked.instantiate(store, context, config).await?),
            Linked::V02(linked) => Running::V02(linked.instantiate(store, context, config).await?),
        }))
    }
}

/// Import namespaces a filter may use: our output and logging, plus the
/// stdio, environment and stream plumbing Rust's std links in (all backed by
/// an empty context). Clocks, randomness, files, sockets and HTTP are refused
/// outright, so a filter stays a pure function of its events.
const ALLOWED_FILTER_IMPORTS: &[&str] = &[
    "sse-ingest:filter/",
    "sse-ingest:pipeline/",
    "wasi:cli/",
    "wasi:io/",
];

fn check_imports(engine: &Engine, component: &Component) -> Result<(), FilterError> {
    let component_type = component.component_type();
    for (name, _) in component_type.imports(engine) {
        if !ALLOWED_FILTER_IMPORTS
            .iter()
            .any(|prefix| name.starts_with(prefix))
        {
            return Err(FilterError::Load(anyhow::anyhow!(
                "it imports `{name}`, a capability filters do not get (only the host's output and logging)"
            )));
        }
    }
    Ok(())
}

/// What a filter is told about its pipeline.
#[derive(Debug, Clone)]
pub struct FilterContext {
    /// The pipeline's name.
    pub pipeline: String,
    /// The SSE endpoint (an envelope's `source`).
    pub source_url: String,
    /// The record format to write.
    pub format: Format,
    /// The pipeline's partition-key strategy.
    pub partition_key: crate::core::partition::KeyStrategy,
    /// Streams a routing filter may send to: the pipeline's own and `--allow-stream`.
    /// Empty where the pipeline allows no other stream: every `routing.send` is then
    /// answered `stream-not-allowed` and its record dead-lettered.
    pub routable_streams: Vec<String>,
}

/// A running filter.
pub struct FilterInstance(Running);

enum Running {
    V01(V01Instance),
    V02(V02Instance),
}

impl std::fmt::Debug for FilterInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterInstance").finish_non_exhaustive()
    }
}

impl FilterInstance {
    /// Runs the filter over one batch.
    pub async fn handle(&mut self, events: &[Event]) -> Result<FilterOutput, FilterError> {
        let store = match &mut self.0 {
            Running::V01(running) => &mut running.store,
            Running::V02(running) => &mut running.store,
        };
        store.data_mut().renew();
        store.set_epoch_deadline(1);
        let handled = match &mut self.0 {
            Running::V01(running) => running.handle(events).await,
            Running::V02(running) => running.handle(events).await,
        };
        if handled.is_err() {
            let store = match &mut self.0 {
                Running::V01(running) => &mut running.store,
                Running::V02(running) => &mut running.store,
            };
            store.data_mut().records = Vec::new();
        }
        handled
    }
}
