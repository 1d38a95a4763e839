//! Write sse-ingest filter components in Rust, against the public contract
//! `sse-ingest:filter@0.2.0` (`wit/filter/filter.wit`).
//!
//! A filter is one type implementing [`Filter`]: it is built once from the
//! pipeline's information and its configuration, then handles batches of events and
//! says, through [`Output`], which events to keep and which records of its own to
//! write. The host writes a kept event in the pipeline's `--format` and keys it by
//! `--partition-key`: the filter never builds those itself. [`export_filter!`] turns
//! the type into a component.
//!
//! ```text
//! use filter_sdk::{Config, ConfigError, Event, Filter, FilterError, Output, Pipeline};
//!
//! struct OnlyEdits;
//!
//! impl Filter for OnlyEdits {
//!     fn new(_pipeline: &Pipeline, config: &Config) -> Result<Self, ConfigError> {
//!         config.reject_unknown(&[])?;
//!         Ok(OnlyEdits)
//!     }
//!     fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), FilterError> {
//!         for (index, event) in events.iter().enumerate() {
//!             if event.data.contains("\"type\":\"edit\"") {
//!                 out.keep(index);
//!             }
//!         }
//!         Ok(())
//!     }
//! }
//!
//! filter_sdk::export_filter!(OnlyEdits);
//! ```
//!
//! Build it with `cargo build --target wasm32-wasip2 --release` and pass the
//! `.wasm` to `sse-ingest run --filter FILE.wasm`.

mod config;
mod drops;
#[doc(hidden)]
pub mod runtime;

pub use config::{Config, describe as describe_config_error, invalid};
pub use drops::DropCounter;

/// Generated bindings of the `routing-filter` world; most filters never touch them. A
/// filter that never calls [`Output::send`] does not import `routing`.
// Generated code: the canonical ABI glue is `unsafe` by nature.
#[allow(unsafe_code, clippy::too_many_arguments)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "routing-filter",
        path: "../../wit/filter",
        default_bindings_module: "filter_sdk::bindings",
        pub_export_macro: true,
        export_macro_name: "export_bindings",
    });
}

pub use bindings::sse_ingest::filter::log::log;
pub use bindings::sse_ingest::filter::types::{
    ConfigError, ConfigValue, Event, EventFailure, FilterError, InvalidValue, Level,
    Output as WitOutput, OwnRecord, PipelineInfo as Pipeline,
};

/// A filter: built from its configuration, then called once per batch.
pub trait Filter: 'static {
    /// Builds the filter. An error refuses it (at start, or for a live swap, where the
    /// running filter then stays).
    fn new(pipeline: &Pipeline, config: &Config) -> Result<Self, ConfigError>
    where
        Self: Sized;

    /// Handles one batch, telling `out` what to write. An error fails the batch as
    /// [`FilterError`] says: [`FilterError::Event`] dead-letters one event and the host
    /// hands the rest to `handle` again; [`FilterError::Batch`] leaves the whole batch to
    /// the pipeline's `--on-filter-error` policy.
    fn handle(&mut self, events: &[Event], out: &mut Output) -> Result<(), FilterError>;
}

/// What a filter writes for the batch it is handling, in the order it says it.
#[derive(Debug, Default)]
pub struct Output {
    outputs: Vec<WitOutput>,
}

impl Output {
    /// Keeps the event at `index` of the batch as it is: the host writes it in the
    /// pipeline's format and keys it by the pipeline's partition-key strategy.
    pub fn keep(&mut self, index: usize) {
        self.outputs.push(WitOutput::Keep(index_u32(index)));
    }

    /// Keeps the event at `index` as it is, under a partition key of the filter's choice.
    pub fn keep_keyed(&mut self, index: usize, partition_key: String) {
        self.outputs.push(WitOutput::KeepKeyed(
            bindings::sse_ingest::filter::types::KeyedEvent {
                event: index_u32(index),
                partition_key,
            },
        ));
    }

    /// Writes `data`, made from the event at `index`, keyed by the pipeline's strategy
    /// applied to that event.
    pub fn record(&mut self, index: usize, data: Vec<u8>) {
        self.outputs.push(WitOutput::Record(OwnRecord {
            event: index_u32(index),
            data,
            partition_key: None,
        }));
    }

    /// Writes `data`, made from the event at `index`, under its own partition key.
    pub fn record_keyed(&mut self, index: usize, data: Vec<u8>, partition_key: String) {
        self.outputs.push(WitOutput::Record(OwnRecord {
            event: index_u32(index),
            data,
            partition_key: Some(partition_key),
        }));
    }

    /// Writes `data`, made from the event at `index`, to another Kinesis stream. The
    /// operator must allow it (`--allow-stream STREAM`); otherwise the host answers with
    /// an error and the record goes to the dead letters with its event. Routed records
    /// are written after the batch's other outputs.
    pub fn send(
        &mut self,
        stream: &str,
        index: usize,
        data: Vec<u8>,
        partition_key: Option<String>,
    ) -> Result<(), bindings::sse_ingest::filter::routing::RouteError> {
        bindings::sse_ingest::filter::routing::send(
            stream,
            &OwnRecord {
                event: index_u32(index),
                data,
                partition_key,
            },
        )
    }

    /// Writes the event at `index`, kept as it is (in the pipeline's format), to another
    /// Kinesis stream, keyed by `partition_key` or else by the pipeline's strategy. The
    /// operator must allow the stream, as for [`Output::send`].
    pub fn forward(
        &mut self,
        stream: &str,
        index: usize,
        partition_key: Option<String>,
    ) -> Result<(), bindings::sse_ingest::filter::routing::RouteError> {
        bindings::sse_ingest::filter::routing::forward(
            stream,
            index_u32(index),
            partition_key.as_deref(),
        )
    }

    /// Adds an output as the contract spells it (for filters that build them themselves).
    pub fn push(&mut self, output: WitOutput) {
        self.outputs.push(output);
    }

    pub(crate) fn take(&mut self) -> Vec<WitOutput> {
        std::mem::take(&mut self.outputs)
    }
}

/// An index of a batch as the contract carries it (a batch never holds 2³² events).
fn index_u32(index: usize) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

/// A batch failure from a message: `handle(...)?` on a `Result<_, String>`.
impl From<String> for FilterError {
    fn from(reason: String) -> Self {
        FilterError::Batch(reason)
    }
}

/// Exports a [`Filter`] type as the component's `filter` world.
#[macro_export]
macro_rules! export_filter {
    ($filter:ty) => {
        #[doc(hidden)]
        #[derive(Debug)]
        pub struct __SseIngestFilterExport;

        impl $crate::bindings::Guest for __SseIngestFilterExport {
            fn configure(
                pipeline: $crate::Pipeline,
                config: ::std::vec::Vec<$crate::bindings::sse_ingest::filter::types::ConfigEntry>,
            ) -> ::std::result::Result<(), $crate::ConfigError> {
                $crate::runtime::configure::<$filter>(pipeline, config)
            }

            fn handle(
                events: ::std::vec::Vec<$crate::Event>,
            ) -> ::std::result::Result<
                ::std::vec::Vec<$crate::WitOutput>,
                $crate::FilterError,
            > {
                $crate::runtime::handle(&events)
            }
        }

        #[allow(unsafe_code)]
        mod __sse_ingest_filter_export {
            use super::__SseIngestFilterExport;
            $crate::bindings::export_bindings!(__SseIngestFilterExport with_types_in $crate::bindings);
        }
    };
}
