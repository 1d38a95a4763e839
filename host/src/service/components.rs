//! Compiled once, shared by every pipeline: the engine, the source component and each
//! distinct filter component.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;

use crate::config::FilterSpec;
use crate::wasm::components;
use crate::wasm::engine;
use crate::wasm::filter::FilterComponent;
use crate::wasm::source::SourceComponent;

/// The environment variable naming the directory of precompiled components.
pub const PRECOMPILED_DIR_VARIABLE: &str = "SSE_INGEST_PRECOMPILED_DIR";

/// See the module docs.
pub struct Components {
    engine: Engine,
    /// Components compiled ahead of time (`SSE_INGEST_PRECOMPILED_DIR`, set by the container
    /// image to what `sse-ingest precompile` wrote).
    precompiled: Option<PathBuf>,
    source: SourceComponent,
    /// By the SHA-256 of the component's bytes: a file that changed compiles anew.
    filters: Mutex<HashMap<[u8; 32], FilterComponent>>,
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
        Ok(Self {
            engine,
            precompiled,
            source,
            filters: Mutex::new(HashMap::new()),
        })
    }

    /// The engine every component runs on.
    pub fn engine(&self) -> &Engine {
        &self.engine
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
        let digest: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(component) = self
            .filters
            .lock()
            .ok()
            .and_then(|f| f.get(&digest).cloned())
        {
            return Ok((label, component));
        }
        let compiled =
            engine::load_or_compile(&self.engine, self.precompiled.as_deref(), &bytes, &label)
                .map_err(|e| format!("{e:#}"))?;
        let component =
            FilterComponent::new(&self.engine, &compiled).map_err(|e| format!("{label}: {e}"))?;
        if let Ok(mut filters) = self.filters.lock() {
            filters.insert(digest, component.clone());
        }
        Ok((label, component))
    }
}
