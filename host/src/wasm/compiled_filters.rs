//! Filter components compiled and linked once, by the SHA-256 of their bytes, for every
//! pipeline start and every swap.
//!
//! Loading a component from wasmtime's on-disk cache still reads, checks and maps its code;
//! for a swap that was most of the time from the request to the new filter's first batch.
//! Kept here, swapping back to a filter that ran before (a rollback, an A/B flip, a watched
//! file restored) skips it. The most recently used few are kept, so a stream of new
//! versions cannot grow memory without bound.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use sha2::{Digest as _, Sha256};
use wasmtime::Engine;

use crate::wasm::engine;
use crate::wasm::filter::{FilterComponent, FilterError};

/// Distinct filter components kept compiled.
const KEPT: usize = 16;

/// See the module docs.
pub struct CompiledFilters {
    engine: Engine,
    /// Components compiled ahead of time (`SSE_INGEST_PRECOMPILED_DIR`).
    precompiled: Option<PathBuf>,
    /// Most recently used last.
    recent: Mutex<VecDeque<([u8; 32], FilterComponent)>>,
    /// Components compiled (or loaded) so far, kept or not.
    compiled: AtomicUsize,
}

impl std::fmt::Debug for CompiledFilters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.recent.lock().map(|recent| recent.len()).unwrap_or(0);
        f.debug_struct("CompiledFilters")
            .field("precompiled", &self.precompiled)
            .field("kept", &kept)
            .field("compiled", &self.compiled.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl CompiledFilters {
    /// Compiles with `engine`, preferring artefacts in `precompiled`.
    pub fn new(engine: Engine, precompiled: Option<PathBuf>) -> Self {
        Self {
            engine,
            precompiled,
            recent: Mutex::new(VecDeque::with_capacity(KEPT)),
            compiled: AtomicUsize::new(0),
        }
    }

    /// The filter component of `bytes`, compiled and linked, or from those kept; `what`
    /// names it in logs and errors. Compiling blocks: call it off the async workers.
    pub fn get(&self, bytes: &[u8], what: &str) -> Result<FilterComponent, FilterError> {
        let digest: [u8; 32] = Sha256::digest(bytes).into();
        match self.take_kept(&digest) {
            Some(component) => Ok(component),
            None => self.compile_and_keep(digest, bytes, what),
        }
    }

    /// Compiles `bytes` (whose SHA-256 is `digest`) and keeps the result.
    fn compile_and_keep(
        &self,
        digest: [u8; 32],
        bytes: &[u8],
        what: &str,
    ) -> Result<FilterComponent, FilterError> {
        self.compiled.fetch_add(1, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let compiled =
            engine::load_or_compile(&self.engine, self.precompiled.as_deref(), bytes, what)
                .map_err(FilterError::Load)?;
        let component =
            FilterComponent::new(&self.engine, &compiled).map_err(|error| match error {
                FilterError::Load(reason) => FilterError::Load(reason.context(what.to_string())),
                other => other,
            })?;
        // Compiled, or loaded from wasmtime's cache or the precompiled directory: either way
        // once per distinct component while it is kept, so the log shows what a swap waited for.
        tracing::info!(
            filter = what,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "filter compiled"
        );
        self.keep(digest, component.clone());
        Ok(component)
    }

    /// Compiles those of `filters` not kept yet, so that a later swap to one of them finds
    /// it ready; returns how many it compiled. Those already kept keep their place in the
    /// recently-used order. One that fails is logged and skipped: a swap to it will report
    /// the same error. Compiling blocks: call it off the async workers.
    pub fn prepare_ahead(&self, filters: &[(&str, &[u8])]) -> usize {
        let mut compiled = 0;
        for (name, bytes) in filters {
            let digest: [u8; 32] = Sha256::digest(bytes).into();
            if self.is_kept(&digest) {
                continue;
            }
            match self.compile_and_keep(digest, bytes, name) {
                Ok(_) => compiled += 1,
                Err(error) => {
                    tracing::warn!(filter = %name, %error, "cannot compile a filter ahead of a swap")
                }
            }
        }
        compiled
    }

    fn is_kept(&self, digest: &[u8; 32]) -> bool {
        self.recent
            .lock()
            .is_ok_and(|recent| recent.iter().any(|(kept, _)| kept == digest))
    }

    fn take_kept(&self, digest: &[u8; 32]) -> Option<FilterComponent> {
        let mut recent = self.recent.lock().ok()?;
        let at = recent.iter().position(|(kept, _)| kept == digest)?;
        let entry = recent.remove(at)?;
        let component = entry.1.clone();
        recent.push_back(entry);
        Some(component)
    }

    fn keep(&self, digest: [u8; 32], component: FilterComponent) {
        if let Ok(mut recent) = self.recent.lock() {
            recent.retain(|(kept, _)| *kept != digest);
            if recent.len() == KEPT {
                recent.pop_front();
            }
            recent.push_back((digest, component));
        }
    }

    /// How many are kept (for tests).
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.recent.lock().map(|recent| recent.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wasm::components;

    fn filters() -> CompiledFilters {
        let engine = engine::new_engine(None).expect("an engine");
        CompiledFilters::new(engine, None)
    }

    #[test]
    fn the_same_bytes_compile_once_and_other_bytes_anew() {
        let filters = filters();
        let passthrough = components::builtin_filter("passthrough").expect("built in");
        let json_match = components::builtin_filter("json-match").expect("built in");
        filters.get(passthrough, "passthrough").expect("compiles");
        filters.get(passthrough, "passthrough").expect("kept");
        assert_eq!(filters.compiled.load(Ordering::Relaxed), 1);
        filters.get(json_match, "json-match").expect("compiles");
        filters.get(passthrough, "passthrough").expect("kept");
        assert_eq!(filters.compiled.load(Ordering::Relaxed), 2);
        assert_eq!(filters.kept(), 2);
    }

    #[test]
    fn filters_prepared_ahead_compile_once_and_are_then_found_kept() {
        let filters = filters();
        let passthrough = components::builtin_filter("passthrough").expect("built in");
        filters.get(passthrough, "passthrough").expect("compiles");
        let ahead = filters.prepare_ahead(components::FILTERS);
        assert_eq!(ahead, components::FILTERS.len() - 1, "all but the one kept");
        assert_eq!(filters.kept(), components::FILTERS.len());
        let compiled = filters.compiled.load(Ordering::Relaxed);
        for (name, bytes) in components::FILTERS {
            filters.get(bytes, name).expect("kept");
        }
        assert_eq!(filters.compiled.load(Ordering::Relaxed), compiled);
        assert_eq!(filters.prepare_ahead(components::FILTERS), 0);
    }

    #[test]
    fn a_filter_that_cannot_compile_ahead_is_skipped() {
        let filters = filters();
        let passthrough = components::builtin_filter("passthrough").expect("built in");
        let ahead =
            filters.prepare_ahead(&[("garbage", b"not wasm"), ("passthrough", passthrough)]);
        assert_eq!(ahead, 1);
        assert_eq!(filters.kept(), 1);
    }

    #[test]
    fn bytes_that_are_not_a_filter_are_refused_and_not_kept() {
        let filters = filters();
        let refused = filters.get(b"not wasm", "garbage");
        assert!(matches!(refused, Err(FilterError::Load(_))), "{refused:?}");
        assert_eq!(filters.kept(), 0);
    }

    #[test]
    fn only_the_most_recently_used_are_kept() {
        let filters = filters();
        let component = filters
            .get(
                components::builtin_filter("passthrough").expect("built in"),
                "passthrough",
            )
            .expect("compiles");
        for n in 0..KEPT + 3 {
            filters.keep([n as u8; 32], component.clone());
        }
        assert_eq!(filters.kept(), KEPT);
        assert!(
            filters.take_kept(&[0; 32]).is_none(),
            "the oldest stays kept"
        );
        assert!(filters.take_kept(&[(KEPT + 2) as u8; 32]).is_some());
    }
}
