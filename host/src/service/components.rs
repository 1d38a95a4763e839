//! Compiled once, shared by every pipeline: the source component and each distinct filter
//! component (with the engine they run on).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Instant;

use crate::config::FilterSpec;
use crate::wasm::compiled_filters::CompiledFilters;
use crate::wasm::components;
use crate::wasm::engine;
use crate::wasm::filter::{FilterComponent, FilterError};
use crate::wasm::source::SourceComponent;

/// The environment variable naming the directory of precompiled components.
pub const PRECOMPILED_DIR_VARIABLE: &str = "SSE_INGEST_PRECOMPILED_DIR";

/// Why the shared components could not be set up, or a pipeline's filter not loaded.
#[derive(Debug, thiserror::Error)]
pub enum ComponentsError {
    /// The wasmtime engine could not be made (its compiled-code cache, above all).
    #[error("{0:#}")]
    Engine(anyhow::Error),
    /// The built-in source component did not compile or link.
    #[error("{0:#}")]
    Source(anyhow::Error),
    /// The filter's bytes could not be had: no such built-in, an unreadable file.
    #[error("{0}")]
    FilterFile(String),
    /// The filter's bytes are no usable filter component.
    #[error(transparent)]
    Filter(#[from] FilterError),
}

/// See the module docs.
pub struct Components {
    source: SourceComponent,
    /// By the SHA-256 of the component's bytes: a file that changed compiles anew.
    filters: Arc<CompiledFilters>,
    /// Set once the built-in filters are being compiled ahead of swaps.
    builtins_ahead: Once,
}

impl Components {
    /// The engine (caching compiled code in `cache_dir`) and the built-in source.
    pub fn new(cache_dir: Option<&Path>) -> Result<Self, ComponentsError> {
        let engine = engine::new_engine(cache_dir).map_err(ComponentsError::Engine)?;
        let precompiled = std::env::var_os(PRECOMPILED_DIR_VARIABLE).map(PathBuf::from);
        let source = engine::load_or_compile(
            &engine,
            precompiled.as_deref(),
            components::SOURCE,
            "the built-in source",
        )
        .and_then(|c| SourceComponent::new(&engine, &c))
        .map_err(ComponentsError::Source)?;
        // Components compiled ahead of time (`SSE_INGEST_PRECOMPILED_DIR`, set by the
        // container image to what `sse-ingest precompile` wrote).
        let filters = Arc::new(CompiledFilters::new(engine.clone(), precompiled));
        Ok(Self {
            source,
            filters,
            builtins_ahead: Once::new(),
        })
    }

    /// The source component, linked.
    pub fn source(&self) -> &SourceComponent {
        &self.source
    }

    /// The filter `spec` names with its label; each distinct component is compiled once.
    /// A file is read again at each start, so a reload picks up a changed file.
    pub fn filter(&self, spec: &FilterSpec) -> Result<(String, FilterComponent), ComponentsError> {
        let label = spec.label();
        let bytes = components::load_filter(spec).map_err(ComponentsError::FilterFile)?;
        let component = self.filters.get(&bytes, &label)?;
        Ok((label, component))
    }

    /// Every filter compiled so far, shared with the swaps of every pipeline.
    pub fn filters(&self) -> &Arc<CompiledFilters> {
        &self.filters
    }

    /// Compiles every built-in filter on a blocking thread, once per process, so that a swap
    /// to one over the admin API (a rollback to `passthrough`, an A/B flip between built-ins)
    /// waits for no compiling (the swap latencies, and the resident memory this costs:
    /// BENCHMARKS.md, "Filter swap latency"). Called once a pipeline runs, after start-up's
    /// own compiling, so it does not hold up the first event.
    pub fn compile_builtin_filters_ahead(&self) {
        self.builtins_ahead.call_once(|| {
            let filters = Arc::clone(&self.filters);
            tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let compiled = filters.prepare_ahead(components::FILTERS);
                tracing::info!(
                    compiled,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "built-in filters ready for swaps"
                );
            });
        });
    }
}
