//! What a filter instance's store holds, shared by both contract versions: the sandbox's
//! limits and budgets, and what the filter handed the host during the current call.

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::core::record::Record;
use crate::wasm::filter::FilterError;
use crate::wasm::sandbox::{CpuBudget, OutputBudget, OverBudget, SandboxLimiter};

/// Store data of a filter instance.
pub(super) struct FilterState {
    pub(super) pipeline: String,
    wasi: WasiCtx,
    table: ResourceTable,
    pub(super) limits: SandboxLimiter,
    /// Records put during the current call (0.1 `put-records`, 0.2 `routing.send`), with the
    /// index of their event when the contract names it.
    pub(super) records: Vec<(Record, Option<u32>)>,
    /// Events a 0.2 filter forwarded to another stream during the current call
    /// (`routing.forward`): how many routed records came before it (its place among
    /// `records`), stream, event index, partition key. Shaped after the call.
    pub(super) forwarded: Vec<(usize, String, u32, Option<String>)>,
    pub(super) output: OutputBudget,
    /// Set when the filter went past `output`, for [`trap_cause`].
    pub(super) over_budget: Option<OverBudget>,
    pub(super) cpu: CpuBudget,
    /// Streams `routing.send` may name: the pipeline's own and `--allow-stream`.
    pub(super) routable: Vec<String>,
}

impl FilterState {
    pub(super) fn new(pipeline: &str, memory_bytes: usize, cpu_ticks: u64) -> Self {
        Self {
            pipeline: pipeline.to_string(),
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            limits: SandboxLimiter::new(memory_bytes),
            records: Vec::new(),
            forwarded: Vec::new(),
            output: OutputBudget::new(memory_bytes),
            over_budget: None,
            cpu: CpuBudget::new(cpu_ticks),
            routable: Vec::new(),
        }
    }

    /// A new call: nothing put yet, the whole output and CPU budget.
    pub(super) fn renew(&mut self) {
        self.records.clear();
        self.forwarded.clear();
        self.output.renew();
        self.cpu.renew();
    }

    /// Takes `records` records of `bytes` bytes from the batch's output budget; past it the
    /// call must trap (the caller returns the error to wasmtime).
    pub(super) fn spend(&mut self, records: usize, bytes: usize) -> wasmtime::Result<()> {
        if let Err(over) = self.output.spend(records, bytes) {
            self.over_budget = Some(over);
            self.records = Vec::new();
            self.forwarded = Vec::new();
            return Err(wasmtime::Error::new(over));
        }
        Ok(())
    }
}

impl WasiView for FilterState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// What a failed call means: the output budget or the memory limit when the sandbox
/// refused something during the call, else the trap itself.
pub(super) fn trap_cause(state: &mut FilterState, trap: wasmtime::Error) -> FilterError {
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
