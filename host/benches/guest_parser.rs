//! The SSE parser's throughput inside the sandbox: runs the `parser-bench` WASI command
//! (guest/parser-bench: the parser compiled as the source component compiles it) in the
//! product's engine, and prints what it measured. The native figure for comparison:
//! `cargo bench -p sse-parser --bench parse`.
//!
//! Run: `cargo bench -p sse-ingest --bench guest_parser`

use anyhow::{Context as _, Result};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::p2::bindings::Command;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    // The product's engine settings (`host/src/wasm/engine.rs`): components, epochs.
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    let engine = Engine::new(&config)?;
    let bytes = std::fs::read(env!("SSE_INGEST_BENCH_PARSER_WASM"))
        .context("the parser bench component (built by host/build.rs)")?;
    let component = Component::new(&engine, &bytes)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
    let state = State {
        wasi: WasiCtx::builder().inherit_stdout().inherit_stderr().build(),
        table: ResourceTable::new(),
    };
    let mut store = Store::new(&engine, state);
    // Nothing advances the epoch here: the deadline is never reached.
    store.set_epoch_deadline(u64::MAX);
    let command = Command::instantiate_async(&mut store, &component, &linker).await?;
    println!("the SSE parser inside the sandbox (wasm32-wasip2, wasmtime, the product's engine):");
    command
        .wasi_cli_run()
        .call_run(&mut store)
        .await?
        .map_err(|()| anyhow::anyhow!("the parser bench failed"))
}
