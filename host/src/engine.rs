//! The wasmtime engine and component compilation.
//!
//! One engine per process. Compiled components are cached on disk by
//! wasmtime's own cache (keyed by the component's bytes, the wasmtime version
//! and the engine's settings), so a restart loads a built-in component in
//! about a millisecond instead of compiling it again.

use std::path::Path;

use anyhow::{Context as _, Result};
use wasmtime::component::Component;
use wasmtime::{Cache, CacheConfig, Config, Engine};

/// Builds the engine. `cache_dir` holds compiled components.
pub fn new_engine(cache_dir: Option<&Path>) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    if let Some(dir) = cache_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the component cache {}", dir.display()))?;
        let dir = std::path::absolute(dir)
            .with_context(|| format!("cannot resolve {}", dir.display()))?;
        let mut cache = CacheConfig::new();
        cache.with_directory(dir);
        let cache = Cache::new(cache).map_err(|e| anyhow::anyhow!("component cache: {e}"))?;
        config.cache(Some(cache));
    }
    Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the wasmtime engine: {e}"))
}

/// Compiles (or loads from the cache) a component from its bytes.
pub fn compile(engine: &Engine, bytes: &[u8], what: &str) -> Result<Component> {
    Component::new(engine, bytes)
        .map_err(|e| anyhow::anyhow!("{what} is not a valid component: {e:#}"))
}
