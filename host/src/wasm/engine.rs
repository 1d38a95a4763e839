//! The wasmtime engine and component compilation.
//!
//! One engine per process. Compiled components are cached on disk by
//! wasmtime's own cache (keyed by the component's bytes, the wasmtime version
//! and the engine's settings), so a restart loads a built-in component in
//! about a millisecond instead of compiling it again.
//!
//! CPU budgets use epoch interruption: a background thread advances the
//! engine's epoch every [`EPOCH_TICK`]; a filter call gets a deadline of so
//! many ticks and traps past it, while the source yields to the scheduler at
//! each tick. Epochs were measured cheaper than fuel on the filter hot path
//! (see `host/benches/sandbox.rs` and the README's figures).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result};
use wasmtime::component::Component;
use wasmtime::{Cache, CacheConfig, Config, Engine};

/// How often the engine's epoch advances: the granularity of CPU budgets.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Builds the engine and starts its epoch ticker. `cache_dir` holds compiled components.
pub fn new_engine(cache_dir: Option<&Path>) -> Result<Engine> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
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
    let engine = Engine::new(&config)
        .map_err(|e| anyhow::anyhow!("cannot create the wasmtime engine: {e}"))?;
    start_epoch_ticker(&engine);
    Ok(engine)
}

/// Advances the epoch every tick for as long as the engine lives.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("epoch-ticker".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
        .unwrap_or_else(
            |error| tracing::error!(%error, "cannot start the epoch ticker: CPU budgets are off"),
        );
}

/// The number of epoch ticks in a budget (at least one).
pub fn ticks(budget: Duration) -> u64 {
    (budget.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// Compiles (or loads from the cache) a component from its bytes.
pub fn compile(engine: &Engine, bytes: &[u8], what: &str) -> Result<Component> {
    Component::new(engine, bytes)
        .map_err(|e| anyhow::anyhow!("{what} is not a valid component: {e:#}"))
}
