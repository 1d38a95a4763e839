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
use wasmtime::{Cache, CacheConfig, Config, Engine, ProfilingStrategy};

/// How often the engine's epoch advances: the granularity of CPU budgets.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The settings every engine of this binary shares: a precompiled component loads only into
/// an engine with the same ones.
fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config
}

/// Builds the engine and starts its epoch ticker. `cache_dir` holds compiled components.
pub fn new_engine(cache_dir: Option<&Path>) -> Result<Engine> {
    let mut config = base_config();
    // `perf record` cannot name the guests' compiled code on its own: with
    // SSE_INGEST_WASM_PROFILER=perfmap, wasmtime writes /tmp/perf-PID.map for it (BENCHMARKS.md).
    if std::env::var_os("SSE_INGEST_WASM_PROFILER").is_some_and(|value| value == "perfmap") {
        config.profiler(ProfilingStrategy::PerfMap);
    }
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
    let component = Component::new(engine, bytes)
        .map_err(|e| anyhow::anyhow!("{what} is not a valid component: {e:#}"));
    release_compiler_memory();
    component
}

/// Has every thread that compiled give back the memory compiling freed.
///
/// wasmtime compiles on rayon's global pool, whose threads then sit idle. mimalloc (the
/// binary's allocator) returns a thread's freed pages to the system only when that thread
/// next allocates, so what Cranelift freed there stayed resident for good: measured, a
/// process that compiled its components (an empty cache) held 10-12 MiB more than one that
/// loaded them (BENCHMARKS.md). wasmtime does not say whether it compiled or loaded from its
/// cache, so a load collects too (it starts rayon's idle pool if nothing had; warm start-up
/// measured the same, 18 ms). Under another allocator this only sets up mimalloc's empty
/// per-thread state.
fn release_compiler_memory() {
    fn collect() {
        // SAFETY: `mi_collect` frees and purges the calling thread's own unused pages; it
        // touches no memory in use and may be called from any thread at any time.
        #[allow(unsafe_code)]
        unsafe {
            libmimalloc_sys::mi_collect(true);
        }
    }
    rayon::broadcast(|_| collect());
    collect();
}

/// The file name of `bytes` compiled ahead of time: their SHA-256, so an artefact of other
/// bytes (another version of the binary) is never picked.
pub fn precompiled_name(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(bytes);
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{hex}.cwasm")
}

/// An engine that compiles for the baseline CPU of this binary's target (no features of the
/// machine it runs on), so that what it compiles loads on any CPU of that architecture.
pub fn portable_engine() -> Result<Engine> {
    let mut config = base_config();
    config
        .target(env!("SSE_INGEST_HOST_TARGET"))
        .map_err(|e| anyhow::anyhow!("cannot compile for the baseline CPU: {e}"))?;
    Engine::new(&config).map_err(|e| anyhow::anyhow!("cannot create the wasmtime engine: {e}"))
}

/// `bytes` from `dir`'s ahead-of-time artefact when there is one this engine accepts, else
/// compiled (through the cache). An artefact built for other engine settings or a CPU
/// without the features it uses is refused by wasmtime and logged: the component is then
/// compiled into the cache, which on a container is the state volume.
pub fn load_or_compile(
    engine: &Engine,
    precompiled: Option<&Path>,
    bytes: &[u8],
    what: &str,
) -> Result<Component> {
    if let Some(dir) = precompiled {
        let path = dir.join(precompiled_name(bytes));
        if path.exists() {
            match deserialize(engine, &path) {
                Ok(component) => {
                    tracing::debug!(component = what, path = %path.display(), "loaded precompiled");
                    return Ok(component);
                }
                Err(error) => tracing::warn!(
                    component = what,
                    path = %path.display(),
                    error = %format!("{error:#}"),
                    "precompiled component refused: compiling it instead"
                ),
            }
        }
    }
    compile(engine, bytes, what)
}

/// Loads compiled code from `path`.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: wasmtime runs the machine code in the file as it is, so the file must be one
    // that `Engine::precompile_component` wrote. Only `sse-ingest precompile` writes into
    // this directory (a read-only directory of the container image, named by
    // SSE_INGEST_PRECOMPILED_DIR), under the SHA-256 of the component it compiled, and
    // wasmtime checks its header, its version and the engine and CPU settings before use.
    unsafe { Component::deserialize_file(engine, path) }.map_err(|e| anyhow::anyhow!("{e:#}"))
}
