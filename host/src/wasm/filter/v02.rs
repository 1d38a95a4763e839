//! Filters of the public contract `sse-ingest:filter@0.2.0` (`wit/filter/filter.wit`).
//!
//! A 0.2 filter answers each batch with a value: outputs that name their event (kept as it
//! is, or a record of the filter's own bytes). The host shapes kept events itself
//! ([`Shaper`]), so every language writes the same bytes and keys; it knows which event
//! each record came from, so the events filtered out are exact and a refused record is
//! dead-lettered with its event. An `event` error dead-letters that one event and hands
//! the rest of the batch to the filter again.

use bytes::Bytes;
use wasmtime::Store;
use wasmtime::component::{Component, Func, HasSelf, Linker};

use crate::core::record::Record;
use crate::wasm::filter::config_value::typed_value;
use crate::wasm::filter::shape::Shaper;
use crate::wasm::filter::state::{FilterState, trap_cause};
use crate::wasm::filter::{FilterContext, FilterError, FilterOutput};
use crate::wasm::source::{Event, log_from_guest};

/// Generated bindings of the 0.2 `routing-filter` world (the `filter` world plus the
/// opt-in `routing` import): a plain filter links against it too.
#[allow(missing_docs)]
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit/filter",
        world: "routing-filter",
        imports: { default: async | trappable },
        exports: { default: async },
        require_store_data_send: true,
    });
}

use bindings::sse_ingest::filter::routing::RouteError;
use bindings::sse_ingest::filter::types::{
    ConfigEntry, ConfigError, ConfigValue, FilterError as WitFilterError, Level, Output, OwnRecord,
    PipelineInfo,
};
use bindings::{RoutingFilter, RoutingFilterPre};

/// The most events of one batch a filter may fail one by one. Each failure hands the rest
/// of the batch to the filter again, so this bounds a batch's calls; past it the batch
/// fails as a whole and the failure policy takes it.
pub const MAX_EVENT_FAILURES_PER_BATCH: usize = 16;

/// `handle`, called with the source's own event type (the two records are the same shape,
/// and the component model checks shapes, not names), so a batch is never copied to be
/// handed over. Typed at each call, since the parameter borrows the batch.
type HandleParams<'a> = (&'a [Event],);
type HandleResults = (Result<Vec<Output>, WitFilterError>,);

/// A 0.2 filter linked and ready to instantiate.
#[derive(Clone)]
pub(super) struct V02Component {
    pre: RoutingFilterPre<FilterState>,
}

impl V02Component {
    pub(super) fn new(
        engine: &wasmtime::Engine,
        component: &Component,
    ) -> Result<Self, FilterError> {
        let mut linker: Linker<FilterState> = Linker::new(engine);
        // Rust's std for wasm32-wasip2 imports a few wasi interfaces; they are
        // linked against an empty context: no files, no sockets, no env.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|e| FilterError::Load(e.into()))?;
        bindings::sse_ingest::filter::log::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| FilterError::Load(e.into()))?;
        bindings::sse_ingest::filter::routing::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(|e| FilterError::Load(e.into()))?;
        let pre = linker
            .instantiate_pre(component)
            .map_err(|e| FilterError::Load(e.into()))?;
        let pre = RoutingFilterPre::new(pre).map_err(|e| FilterError::Load(e.into()))?;
        Ok(Self { pre })
    }

    pub(super) fn engine(&self) -> &wasmtime::Engine {
        self.pre.engine()
    }

    pub(super) async fn instantiate(
        &self,
        mut store: Store<FilterState>,
        context: &FilterContext,
        config: &[(String, String)],
    ) -> Result<V02Instance, FilterError> {
        store.data_mut().routable = context.routable_streams.clone();
        let instance = self
            .pre
            .instance_pre()
            .instantiate_async(&mut store)
            .await
            .map_err(|e| FilterError::Load(e.into()))?;
        let filter =
            RoutingFilter::new(&mut store, &instance).map_err(|e| FilterError::Load(e.into()))?;
        let handle = instance
            .get_func(&mut store, "handle")
            .ok_or_else(|| FilterError::Load(anyhow::anyhow!("it exports no `handle`")))?;
        // Checks the shapes once here; each call types it again for its batch's lifetime.
        handle
            .typed::<HandleParams<'_>, HandleResults>(&store)
            .map_err(|e| FilterError::Load(e.into()))?;
        let info = PipelineInfo {
            name: context.pipeline.clone(),
            source_url: context.source_url.clone(),
        };
        let entries: Vec<ConfigEntry> = config
            .iter()
            .map(|(key, value)| ConfigEntry {
                key: key.clone(),
                value: typed_value(value),
            })
            .collect();
        match filter.call_configure(&mut store, &info, &entries).await {
            Ok(Ok(())) => Ok(V02Instance {
                store,
                handle,
                shaper: Shaper::new(context),
            }),
            Ok(Err(refusal)) => Err(FilterError::Init(describe_config_error(&refusal))),
            Err(trap) => Err(trap_cause(store.data_mut(), trap)),
        }
    }
}

/// A running 0.2 filter.
pub(super) struct V02Instance {
    pub(super) store: Store<FilterState>,
    handle: Func,
    shaper: Shaper,
}

impl V02Instance {
    /// Runs the filter over a batch; an `event` error dead-letters that event and runs the
    /// rest again, up to [`MAX_EVENT_FAILURES_PER_BATCH`] times.
    pub(super) async fn handle(&mut self, events: &[Event]) -> Result<FilterOutput, FilterError> {
        // Indices (into `events`) of the events still handed over; `None`: all of them.
        let mut remaining: Option<Vec<usize>> = None;
        let mut failed: Vec<(u32, String)> = Vec::new();
        loop {
            let subset: Vec<Event>;
            let handed: &[Event] = match &remaining {
                None => events,
                Some(indices) => {
                    subset = indices.iter().map(|&i| events[i].clone()).collect();
                    &subset
                }
            };
            let original = |index: u32| -> Option<usize> {
                let index = index as usize;
                match &remaining {
                    None => (index < events.len()).then_some(index),
                    Some(indices) => indices.get(index).copied(),
                }
            };
            // The record and byte budget is per call; the CPU budget is the batch's.
            let state = self.store.data_mut();
            state.records.clear();
            state.forwarded.clear();
            state.output.renew();
            let call = match self
                .handle
                .typed::<HandleParams<'_>, HandleResults>(&self.store)
            {
                Ok(handle) => handle.call_async(&mut self.store, (handed,)).await,
                Err(error) => Err(error),
            };
            match call {
                Ok((Ok(outputs),)) => {
                    return self.shape(events, handed.len(), outputs, original, failed);
                }
                Ok((Err(WitFilterError::Event(failure)),)) => {
                    let Some(index) = original(failure.event) else {
                        return Err(FilterError::Batch(format!(
                            "it failed event {} of a batch of {}: no such event",
                            failure.event,
                            handed.len()
                        )));
                    };
                    failed.push((index as u32, failure.reason));
                    if failed.len() > MAX_EVENT_FAILURES_PER_BATCH {
                        return Err(FilterError::Batch(format!(
                            "it failed more than {MAX_EVENT_FAILURES_PER_BATCH} events of one \
                             batch one by one (the last: {})",
                            failed.last().map_or("", |(_, reason)| reason.as_str())
                        )));
                    }
                    let left: Vec<usize> = (0..handed.len() as u32)
                        .filter(|&i| i != failure.event)
                        .filter_map(original)
                        .collect();
                    if left.is_empty() {
                        return Ok(FilterOutput {
                            failed,
                            exact: true,
                            ..FilterOutput::default()
                        });
                    }
                    remaining = Some(left);
                }
                Ok((Err(WitFilterError::Batch(reason)),)) => {
                    return Err(FilterError::Batch(reason));
                }
                Ok((Err(WitFilterError::Configuration(problem)),)) => {
                    return Err(FilterError::Batch(format!(
                        "its configuration cannot work: {}",
                        describe_config_error(&problem)
                    )));
                }
                Err(trap) => return Err(trap_cause(self.store.data_mut(), trap)),
            }
        }
    }

    /// Turns a successful call's outputs (and routed records) into records for the sink.
    fn shape(
        &mut self,
        events: &[Event],
        handed: usize,
        outputs: Vec<Output>,
        original: impl Fn(u32) -> Option<usize>,
        failed: Vec<(u32, String)>,
    ) -> Result<FilterOutput, FilterError> {
        let own_bytes: usize = outputs
            .iter()
            .map(|output| match output {
                Output::Keep(_) => 0,
                Output::KeepKeyed(keyed) => keyed.partition_key.len(),
                Output::Record(own) => {
                    own.data.len() + own.partition_key.as_ref().map_or(0, String::len)
                }
            })
            .sum();
        let state = self.store.data_mut();
        if let Err(over) = state.output.spend(outputs.len(), own_bytes) {
            return Err(FilterError::OutputBudget(over));
        }
        let routed = std::mem::take(&mut state.records);
        let forwarded = std::mem::take(&mut state.forwarded);
        let mut named = vec![false; events.len()];
        let mut records = Vec::with_capacity(outputs.len() + routed.len());
        let mut origins = Vec::with_capacity(outputs.len() + routed.len());
        let no_such_event = |index: u32| {
            FilterError::Batch(format!(
                "an output names event {index} of a batch of {handed}: no such event"
            ))
        };
        let outputs_len = outputs.len();
        for output in outputs {
            let (index, record) = match output {
                Output::Keep(index) => {
                    let at = original(index).ok_or_else(|| no_such_event(index))?;
                    (at, self.shaper.event_record(&events[at]))
                }
                Output::KeepKeyed(keyed) => {
                    let at = original(keyed.event).ok_or_else(|| no_such_event(keyed.event))?;
                    let mut record = self.shaper.event_record(&events[at]);
                    if !keyed.partition_key.is_empty() {
                        record.partition_key = Some(keyed.partition_key);
                    }
                    (at, record)
                }
                Output::Record(own) => {
                    let at = original(own.event).ok_or_else(|| no_such_event(own.event))?;
                    (
                        at,
                        self.shaper
                            .own_record(&events[at], own.data, own.partition_key),
                    )
                }
            };
            named[index] = true;
            records.push(record);
            origins.push(Some(index as u32));
        }
        // Routed records in the order of the calls: sent ones (in `routed`) and forwarded
        // events (each knows its place among them).
        let mut forwarded = forwarded.into_iter().peekable();
        let mut routed = routed.into_iter();
        loop {
            let next_is_forwarded = forwarded
                .peek()
                .is_some_and(|(place, ..)| *place == records.len() - outputs_len);
            let (record, at) = if next_is_forwarded {
                let Some((_, stream, index, key)) = forwarded.next() else {
                    break;
                };
                let at = original(index).ok_or_else(|| no_such_event(index))?;
                let mut record = self.shaper.event_record(&events[at]);
                if let Some(key) = key.filter(|k| !k.is_empty()) {
                    record.partition_key = Some(key);
                }
                record.stream = Some(stream);
                (record, at)
            } else if let Some((mut record, event)) = routed.next() {
                let index = event.unwrap_or(u32::MAX);
                let at = original(index).ok_or_else(|| no_such_event(index))?;
                if record.partition_key.is_none() {
                    record.partition_key = self.shaper.key_for(&events[at]);
                }
                (record, at)
            } else {
                break;
            };
            named[at] = true;
            records.push(record);
            origins.push(Some(at as u32));
        }
        let failed_or_named =
            |(i, named): (usize, &bool)| *named || failed.iter().any(|(f, _)| *f as usize == i);
        let filtered_out = named
            .iter()
            .enumerate()
            .filter(|entry| !failed_or_named(*entry))
            .count() as u64;
        Ok(FilterOutput {
            records,
            origins,
            failed,
            filtered_out,
            exact: true,
        })
    }
}

/// An operator's sentence for a configuration error.
fn describe_config_error(error: &ConfigError) -> String {
    match error {
        ConfigError::UnknownKey(key) => format!("unknown configuration key `{key}`"),
        ConfigError::MissingKey(key) => format!("missing configuration key `{key}`"),
        ConfigError::InvalidValue(invalid) if invalid.key.is_empty() => invalid.reason.clone(),
        ConfigError::InvalidValue(invalid) => {
            format!("`{}`: {}", invalid.key, invalid.reason)
        }
    }
}

impl bindings::sse_ingest::filter::log::Host for FilterState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        use crate::wasm::source::Level as SourceLevel;
        let level = match level {
            Level::Trace => SourceLevel::Trace,
            Level::Debug => SourceLevel::Debug,
            Level::Info => SourceLevel::Info,
            Level::Warn => SourceLevel::Warn,
            Level::Error => SourceLevel::Error,
        };
        log_from_guest(&self.pipeline, "filter", level, &message);
        Ok(())
    }
}

impl bindings::sse_ingest::filter::routing::Host for FilterState {
    async fn send(
        &mut self,
        stream: String,
        record: OwnRecord,
    ) -> wasmtime::Result<Result<(), RouteError>> {
        let bytes =
            stream.len() + record.data.len() + record.partition_key.as_ref().map_or(0, String::len);
        self.spend(1, bytes)?;
        let answer = self.route_answer(&stream);
        // A refused stream is still collected: the stream rule dead-letters the record with
        // its event, so nothing a filter sends is lost without a trace.
        self.records.push((
            Record {
                data: Bytes::from(record.data),
                partition_key: record.partition_key,
                stream: Some(stream),
            },
            Some(record.event),
        ));
        Ok(answer)
    }

    async fn forward(
        &mut self,
        stream: String,
        event: u32,
        partition_key: Option<String>,
    ) -> wasmtime::Result<Result<(), RouteError>> {
        self.spend(
            1,
            stream.len() + partition_key.as_ref().map_or(0, String::len),
        )?;
        let answer = self.route_answer(&stream);
        let place = self.records.len() + self.forwarded.len();
        self.forwarded.push((place, stream, event, partition_key));
        Ok(answer)
    }
}

impl FilterState {
    /// The answer to a routed record: refused where the operator allowed no such stream
    /// (the record is kept all the same, for the stream rule to dead-letter with its event).
    fn route_answer(&self, stream: &str) -> Result<(), RouteError> {
        if self.routable.iter().any(|s| s == stream) {
            Ok(())
        } else {
            Err(RouteError::StreamNotAllowed(stream.to_string()))
        }
    }
}

impl bindings::sse_ingest::filter::types::Host for FilterState {}

/// The config value type, for the typing rule's tests.
pub(super) type WitConfigValue = ConfigValue;
