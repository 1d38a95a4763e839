//! Running a filter component outside a pipeline: for `sse-ingest
//! test-filter`, and for filter authors' own `cargo test`.
//!
//! ```no_run
//! use sse_ingest::wasm::filter_harness::{FilterHarness, event};
//!
//! let wasm = std::fs::read("target/wasm32-wasip2/release/my_filter.wasm").unwrap();
//! let harness = FilterHarness::new(&wasm, &[("where", "/wiki=enwiki")]).unwrap();
//! let output = harness.run(vec![event("message", r#"{"wiki":"enwiki"}"#)]).unwrap();
//! assert_eq!(output.records.len(), 1);
//! ```

use wasmtime::Engine;

use crate::config::FilterLimits;
pub use crate::core::format::Format;
use crate::wasm::filter::{FilterComponent, FilterContext, FilterError, FilterOutput};
use crate::wasm::source::Event;

/// A compiled filter with its configuration, ready to run on events.
#[derive(Debug)]
pub struct FilterHarness {
    component: FilterComponent,
    config: Vec<(String, String)>,
    context: FilterContext,
    runtime: tokio::runtime::Runtime,
}

impl FilterHarness {
    /// Compiles `wasm` as a filter with `key=value` configuration (format `raw`).
    pub fn new(wasm: &[u8], config: &[(&str, &str)]) -> Result<Self, FilterError> {
        Self::with_format(wasm, config, Format::Raw)
    }

    /// Like [`FilterHarness::new`] with the pipeline format the filter sees.
    pub fn with_format(
        wasm: &[u8],
        config: &[(&str, &str)],
        format: Format,
    ) -> Result<Self, FilterError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| FilterError::Load(e.into()))?;
        let engine: Engine = crate::wasm::engine::new_engine(None).map_err(FilterError::Load)?;
        let compiled =
            crate::wasm::engine::compile(&engine, wasm, "the filter").map_err(FilterError::Load)?;
        let component = FilterComponent::new(&engine, &compiled)?;
        Ok(Self {
            component,
            config: config
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            context: FilterContext {
                pipeline: "test".into(),
                source_url: "http://127.0.0.1/test".into(),
                format,
                partition_key: crate::core::partition::KeyStrategy::EventId,
                routable_streams: Vec::new(),
            },
            runtime,
        })
    }

    /// Runs the filter (a fresh instance) over the events as one batch.
    pub fn run(&self, events: Vec<Event>) -> Result<FilterOutput, FilterError> {
        self.runtime.block_on(async {
            let mut instance = self
                .component
                .instantiate(&self.context, &self.config, FilterLimits::default())
                .await?;
            instance.handle(&events).await
        })
    }

    /// Runs the batches in order on one instance (as a pipeline does between failures),
    /// returning each batch's outcome.
    pub fn run_batches(&self, batches: Vec<Vec<Event>>) -> Vec<Result<FilterOutput, FilterError>> {
        self.runtime.block_on(async {
            let mut instance = match self
                .component
                .instantiate(&self.context, &self.config, FilterLimits::default())
                .await
            {
                Ok(instance) => instance,
                Err(error) => return vec![Err(error)],
            };
            let mut outcomes = Vec::with_capacity(batches.len());
            for batch in &batches {
                outcomes.push(instance.handle(batch).await);
            }
            outcomes
        })
    }
}

/// An event as a server would send it, for tests.
pub fn event(event_type: &str, data: &str) -> Event {
    Event {
        event_type: event_type.to_string(),
        data: data.to_string(),
        id: String::new(),
        received_at_ms: 0,
    }
}
