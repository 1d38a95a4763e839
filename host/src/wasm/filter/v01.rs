//! Filters built against `sse-ingest:pipeline@0.1.0`, the contract before
//! `sse-ingest:filter@0.2.0`: adapted so that they load and behave as they always did.
//!
//! A 0.1 filter is handed the pipeline's format and key strategy in `init`, builds its
//! records itself and puts them through `kinesis.put-records`; its records name no event,
//! so the events it filtered out are estimated (events minus records) and a record the
//! stream rule refuses is dead-lettered without its event.

use bytes::Bytes;
use wasmtime::Store;
use wasmtime::component::{Component, HasSelf, Linker};

use crate::core::format::Format;
use crate::core::partition::KeyStrategy;
use crate::core::record::Record;
use crate::wasm::filter::state::{FilterState, trap_cause};
use crate::wasm::filter::{FilterContext, FilterError, FilterOutput};
use crate::wasm::source::bindings::sse_ingest::pipeline::types::Level;
use crate::wasm::source::{Event, log_from_guest};

/// Generated bindings of the 0.1 `filter` world; shares the event type with the source's.
#[allow(missing_docs)]
mod bindings {
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

use bindings::sse_ingest::pipeline::filter_types::{
    KeyStrategy as WitKeyStrategy, OutputFormat, PipelineContext,
};
use bindings::sse_ingest::pipeline::kinesis::OutputRecord;
use bindings::{Filter, FilterPre};

/// Whether `component` is a 0.1 filter: it exports `init` (0.2 exports `configure`).
pub(super) fn is_v01(engine: &wasmtime::Engine, component: &Component) -> bool {
    component
        .component_type()
        .exports(engine)
        .any(|(name, _)| name == "init")
}

/// A 0.1 filter linked and ready to instantiate.
#[derive(Clone)]
pub(super) struct V01Component {
    pre: FilterPre<FilterState>,
}

impl V01Component {
    pub(super) fn new(
        engine: &wasmtime::Engine,
        component: &Component,
    ) -> Result<Self, FilterError> {
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

    pub(super) async fn instantiate(
        &self,
        mut store: Store<FilterState>,
        context: &FilterContext,
        config: &[(String, String)],
    ) -> Result<V01Instance, FilterError> {
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
            Ok(Ok(())) => Ok(V01Instance { store, filter }),
            Ok(Err(message)) => Err(FilterError::Init(message)),
            Err(trap) => Err(trap_cause(store.data_mut(), trap)),
        }
    }

    pub(super) fn engine(&self) -> &wasmtime::Engine {
        self.pre.engine()
    }
}

/// A running 0.1 filter.
pub(super) struct V01Instance {
    pub(super) store: Store<FilterState>,
    filter: Filter,
}

impl V01Instance {
    pub(super) async fn handle(&mut self, events: &[Event]) -> Result<FilterOutput, FilterError> {
        match self.filter.call_handle(&mut self.store, events).await {
            Ok(Ok(())) => {
                let put = std::mem::take(&mut self.store.data_mut().records);
                let filtered_out = (events.len() as u64).saturating_sub(put.len() as u64);
                let (records, origins) = put.into_iter().unzip();
                Ok(FilterOutput {
                    records,
                    origins,
                    failed: Vec::new(),
                    filtered_out,
                    exact: false,
                })
            }
            Ok(Err(message)) => Err(FilterError::Batch(message)),
            Err(trap) => Err(trap_cause(self.store.data_mut(), trap)),
        }
    }
}

/// The pipeline's partition-key strategy as the 0.1 world's type.
fn wit_key_strategy(strategy: &KeyStrategy) -> WitKeyStrategy {
    match strategy {
        KeyStrategy::Constant(value) => WitKeyStrategy::Constant(value.clone()),
        KeyStrategy::EventType => WitKeyStrategy::EventType,
        KeyStrategy::EventId => WitKeyStrategy::EventId,
        KeyStrategy::JsonPointer(pointer) => WitKeyStrategy::JsonPointer(pointer.clone()),
        KeyStrategy::Random => WitKeyStrategy::Random,
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
        self.spend(records.len(), bytes)?;
        self.records.extend(records.into_iter().map(|r| {
            (
                Record {
                    data: Bytes::from(r.data),
                    partition_key: r.partition_key,
                    stream: r.stream,
                },
                None,
            )
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
