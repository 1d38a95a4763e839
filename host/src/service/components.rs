//! Compiled once, shared by every pipeline: the source component and each distinct filter
//! component (with the engine they run on).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::Instant;

use crate::config::FilterSpec;
use crate::wasm::compiled_filters::CompiledFilters;
use crate::wasm::components;
use crate::wasm::engine;
use crate::wasm::filter::FilterComponent;
use crate::wasm::source::SourceComponent;

/// The environment variable naming the directory of precompiled components.
pub const PRECOMPILED_DIR_VARIABLE: &str = "SSE_INGEST_PRECOMPILED_DIR";

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
    pub fn new(cache_dir: Option<&Path>) -> Result<Self, String> {
        let engine = engine::new_engine(cache_dir).map_err(|e| format!("{e:#}"))?;
        let precompiled = std::env::var_os(PRECOMPILED_DIR_VARIABLE).map(PathBuf::from);
        let source = engine::load_or_compile(
            &engine,
            precompiled.as_deref(),
            components::SOURCE,
            "the built-in source",
        )
        .and_then(|c| SourceComponent::new(&engine, &c))
        .map_err(|e| format!("{e:#}"))?;
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
    pub fn filter(&self, spec: &FilterSpec) -> Result<(String, FilterComponent), String> {
        let label = spec.label();
        let bytes = components::load_filter(spec)?;
        let component = self
            .filters
            .get(&bytes, &label)
            .map_err(|e| e.to_string())?;
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
