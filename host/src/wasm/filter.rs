//! The host side of the `filter` world: a sandboxed, swappable event handler.
//!
//! A filter imports only `kinesis` (its output) and `log`. Records it puts
//! during a `handle` call are collected in the store and handed to the
//! pipeline when the call returns, so one batch's records are one unit.

use bytes::Bytes;
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::core::format::Format;
use crate::core::record::Record;
use crate::wasm::sandbox::{CpuBudget, OutputBudget, OverBudget, SandboxLimiter};
use crate::wasm::source::bindings::sse_ingest::pipeline::types::Level;
use crate::wasm::source::{Event, log_from_guest};

/// Generated bindings of the `filter` world; shares the event type with the source's.
#[allow(missing_docs)]
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "filter",
        imports: { default: async | trappable },
        exports: { default: async },
        require_store_data_send: true,
        with: {
            "sse-ingest:pipeline/types": crate::wasm::source::bindings::sse_ingest::pipeline::types,
            "sse-ingest:pipeline/log": crate::wasm::source::bindings::sse_ingest::pipeline::log,
        },
    });
}

use crate::core::partition::KeyStrategy;
use bindings::sse_ingest::pipeline::filter_types::{
    KeyStrategy as WitKeyStrategy, OutputFormat, PipelineContext,
};
use bindings::sse_ingest::pipeline::kinesis::OutputRecord;
use bindings::{Filter, FilterPre};

use crate::config::FilterLimits;

/// The pipeline's partition-key strategy as the filter world's type.
fn wit_key_strategy(strategy: &KeyStrategy) -> WitKeyStrategy {
    match strategy {
        KeyStrategy::Constant(value) => WitKeyStrategy::Constant(value.clone()),
        KeyStrategy::EventType => WitKeyStrategy::EventType,
        KeyStrategy::EventId => WitKeyStrategy::EventId,
        KeyStrategy::JsonPointer(pointer) => WitKeyStrategy::JsonPointer(pointer.clone()),
        KeyStrategy::Random => WitKeyStrategy::Random,
    }
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

/// What a trap means: the memory limit when the limiter refused a growth during the call,
/// else the trap itself.
fn trap_cause(state: &mut FilterState, trap: wasmtime::Error) -> FilterError {
    if let Some(over) = state.over_budget.take() {
        return FilterError::OutputBudget(over);
    }
    match state.limits.refused_memory.take() {
        Some(desired) => FilterError::MemoryLimit {
            desired,
            limit: state.limits.memory_limit(),
        },
        None => FilterError::Trap(trap.into()),
    }
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

/// Store data of a filter instance.
struct FilterState {
    pipeline: String,
    wasi: WasiCtx,
    table: ResourceTable,
    limits: SandboxLimiter,
    records: Vec<Record>,
    output: OutputBudget,
    /// Set when `put-records` went past `output`, for [`trap_cause`].
    over_budget: Option<OverBudget>,
    cpu: CpuBudget,
}

impl WasiView for FilterState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::sse_ingest::pipeline::kinesis::Host for FilterState {
    async fn put_records(&mut self, records: Vec<OutputRecord>) -> wasmtime::Result<()> {
        // The call's data is in host memory already, bounded by the hostcall fuel (the
        // memory limit); the budget bounds what the batch's calls keep together.
        let bytes = records
            .iter()
            .map(|r| {
                r.data.len()
                    + r.partition_key.as_ref().map_or(0, String::len)
                    + r.stream.as_ref().map_or(0, String::len)
            })
            .sum();
        if let Err(over) = self.output.spend(records.len(), bytes) {
            self.over_budget = Some(over);
            self.records = Vec::new();
            return Err(wasmtime::Error::new(over));
        }
        self.records.extend(records.into_iter().map(|r| Record {
            data: Bytes::from(r.data),
            partition_key: r.partition_key,
            stream: r.stream,
        }));
        Ok(())
    }
}

impl crate::wasm::source::bindings::sse_ingest::pipeline::log::Host for FilterState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        log_from_guest(&self.pipeline, "filter", level, &message);
        Ok(())
    }
}

impl crate::wasm::source::bindings::sse_ingest::pipeline::types::Host for FilterState {}
impl bindings::sse_ingest::pipeline::filter_types::Host for FilterState {}

/// A filter component linked and ready to instantiate.
#[derive(Clone)]
pub struct FilterComponent {
    pre: FilterPre<FilterState>,
}

impl std::fmt::Debug for FilterComponent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterComponent").finish_non_exhaustive()
    }
}

impl FilterComponent {
    /// Links a compiled component as a filter. Fails if it is of another world
    /// or imports a capability filters do not get.
    pub fn new(engine: &Engine, component: &Component) -> Result<Self, FilterError> {
        check_imports(engine, component)?;
        let mut linker: Linker<FilterState> = Linker::new(engine);
        // Rust's std for wasm32-wasip2 imports a few wasi interfaces; they are
        // linked against an empty context: no files, no sockets, no env.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| FilterError::Load(e.into()))?;
        bindings::sse_ingest::pipeline::kinesis::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| FilterError::Load(e.into()))?;
        crate::wasm::source::bindings::sse_ingest::pipeline::log::add_to_linker::<_, HasSelf<_>>(
            &mut linker,
            |s| s,
        )
        .map_err(|e| FilterError::Load(e.into()))?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| FilterError::Load(e.into()))?;
        let pre = FilterPre::new(pre).map_err(|e| FilterError::Load(e.into()))?;
        Ok(Self { pre })
    }

    /// Instantiates the filter and runs its `init`.
    pub async fn instantiate(
        &self,
        context: &FilterContext,
        config: &[(String, String)],
        limits: FilterLimits,
    ) -> Result<FilterInstance, FilterError> {
        let state = FilterState {
            pipeline: context.pipeline.clone(),
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: SandboxLimiter::new(limits.memory_bytes),
            records: Vec::new(),
            output: OutputBudget::new(limits.memory_bytes),
            over_budget: None,
            cpu: CpuBudget::new(crate::wasm::engine::ticks(limits.cpu_budget)),
        };
        let mut store = Store::new(self.pre.engine(), state);
        store.limiter(|state| &mut state.limits);
        // One `put-records` call copies at most what the filter's memory can hold.
        store.set_hostcall_fuel(limits.memory_bytes);
        // At each epoch tick the filter yields to the runtime; past its budget a call traps.
        // The budget is renewed before each call.
        store.epoch_deadline_callback(|mut store| store.data_mut().cpu.tick());
        store.set_epoch_deadline(1);
        let filter = self
            .pre
            .instantiate_async(&mut store)
            .await
            .map_err(|e| FilterError::Load(e.into()))?;
        let wit_context = PipelineContext {
            name: context.pipeline.clone(),
            source_url: context.source_url.clone(),
            format: match context.format {
                Format::Raw => OutputFormat::Raw,
                Format::Envelope => OutputFormat::Envelope,
            },
            partition_key: wit_key_strategy(&context.partition_key),
        };
        match filter.call_init(&mut store, &wit_context, config).await {
            Ok(Ok(())) => Ok(FilterInstance { store, filter }),
            Ok(Err(message)) => Err(FilterError::Init(message)),
            Err(trap) => Err(trap_cause(store.data_mut(), trap)),
        }
    }
}

/// Import namespaces a filter may use: our output and logging, plus the
/// stdio, environment and stream plumbing Rust's std links in (all backed by
/// an empty context). Clocks, randomness, files, sockets and HTTP are refused
/// outright, so a filter stays a pure function of its events.
const ALLOWED_FILTER_IMPORTS: &[&str] = &["sse-ingest:pipeline/", "wasi:cli/", "wasi:io/"];

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
}

/// A running filter.
pub struct FilterInstance {
    store: Store<FilterState>,
    filter: Filter,
}

impl std::fmt::Debug for FilterInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterInstance").finish_non_exhaustive()
    }
}

impl FilterInstance {
    /// Runs the filter over one batch; returns the records it put, in order.
    pub async fn handle(&mut self, events: &[Event]) -> Result<Vec<Record>, FilterError> {
        let state = self.store.data_mut();
        state.records.clear();
        state.output.renew();
        state.cpu.renew();
        self.store.set_epoch_deadline(1);
        match self.filter.call_handle(&mut self.store, events).await {
            Ok(Ok(())) => Ok(std::mem::take(&mut self.store.data_mut().records)),
            Ok(Err(message)) => Err(FilterError::Batch(message)),
            Err(trap) => Err(trap_cause(self.store.data_mut(), trap)),
        }
    }
}
