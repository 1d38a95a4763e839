//! What a CPU budget costs a filter: the built-in `json-match` filter over
//! batches of real Wikimedia events, in engines with no interruption, with
//! epoch interruption (what sse-ingest uses) and with fuel metering.
//!
//! Run: `cargo bench -p sse-ingest --bench sandbox` (add `--profile dev` to
//! skip the release build; dependencies are optimised in dev too).
//!
//! It calls the component directly, below the host's filter layer, so it runs the
//! committed `sse-ingest:pipeline@0.1.0` build of `json-match`
//! (`tests/fixtures/filters-0.1`), whose world it binds itself.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "filter",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "sse-ingest:pipeline/types": ::sse_ingest::wasm::source::bindings::sse_ingest::pipeline::types,
            "sse-ingest:pipeline/log": ::sse_ingest::wasm::source::bindings::sse_ingest::pipeline::log,
        },
    });
}

use bindings::Filter;
use bindings::sse_ingest::pipeline::filter_types::{
    self, KeyStrategy, OutputFormat, PipelineContext,
};
use bindings::sse_ingest::pipeline::kinesis::{self, OutputRecord};
use sse_ingest::wasm::source::bindings::sse_ingest::pipeline::{log, types};
use sse_ingest::wasm::source::{Event, Level};
use wasmtime::component::{Component, HasSelf, Linker, ResourceTable};
use wasmtime::{Config, Engine, Store};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    records: usize,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl kinesis::Host for State {
    async fn put_records(&mut self, records: Vec<OutputRecord>) -> wasmtime::Result<()> {
        self.records += records.len();
        Ok(())
    }
}
impl log::Host for State {
    async fn log(&mut self, _level: Level, _message: String) -> wasmtime::Result<()> {
        Ok(())
    }
}
impl types::Host for State {}
impl filter_types::Host for State {}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Meter {
    None,
    Epoch,
    Fuel,
}

fn main() {
    let wasm = &std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/filters-0.1/json_match_filter.wasm"
    ))
    .unwrap()[..];
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/wikimedia-recentchange-sample.ndjson"
    ))
    .unwrap();
    let data: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let batch: Vec<Event> = (0..512)
        .map(|n| Event {
            event_type: "message".into(),
            data: data[n % data.len()].to_string(),
            id: n.to_string(),
            received_at_ms: 0,
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut baseline = None;
    for meter in [Meter::None, Meter::Epoch, Meter::Fuel] {
        let per_event = runtime.block_on(measure(wasm, &batch, meter));
        let base = *baseline.get_or_insert(per_event);
        println!(
            "{meter:?}: {:.3} µs per event ({:+.1}% vs none), json-match with 2 predicates, batches of 512 real events",
            per_event.as_secs_f64() * 1e6,
            (per_event.as_secs_f64() / base.as_secs_f64() - 1.0) * 100.0
        );
    }
}

async fn measure(wasm: &[u8], batch: &[Event], meter: Meter) -> Duration {
    let mut config = Config::new();
    config.epoch_interruption(meter == Meter::Epoch);
    config.consume_fuel(meter == Meter::Fuel);
    let engine = Engine::new(&config).unwrap();
    let component = Component::new(&engine, wasm).unwrap();
    let mut linker: Linker<State> = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    kinesis::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).unwrap();
    log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).unwrap();
    let mut store = Store::new(
        &engine,
        State {
            wasi: WasiCtx::builder().build(),
            table: ResourceTable::new(),
            records: 0,
        },
    );
    let arm = |store: &mut Store<State>| match meter {
        Meter::Epoch => store.set_epoch_deadline(1_000_000),
        Meter::Fuel => store.set_fuel(u64::MAX / 2).unwrap(),
        Meter::None => {}
    };
    arm(&mut store);
    let filter = Filter::instantiate_async(&mut store, &component, &linker)
        .await
        .unwrap();
    let context = PipelineContext {
        name: "bench".into(),
        source_url: "http://127.0.0.1/".into(),
        format: OutputFormat::Raw,
        partition_key: KeyStrategy::EventId,
    };
    let config = vec![
        ("where".to_string(), "/wiki=enwiki".to_string()),
        ("where".to_string(), "/bot!=true".to_string()),
    ];
    arm(&mut store);
    filter
        .call_init(&mut store, &context, &config)
        .await
        .unwrap()
        .unwrap();
    let rounds = 200;
    for _ in 0..20 {
        arm(&mut store);
        filter
            .call_handle(&mut store, batch)
            .await
            .unwrap()
            .unwrap();
    }
    let started = Instant::now();
    for _ in 0..rounds {
        arm(&mut store);
        filter
            .call_handle(&mut store, batch)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(store.data().records > 0);
    started.elapsed() / (rounds * batch.len() as u32)
}
