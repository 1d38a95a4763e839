//! `sse-ingest precompile DIR`: the built-in components compiled ahead of time, for the
//! baseline CPU of this binary's architecture, so a container image ships them and a start
//! loads them in milliseconds instead of compiling (see `wasm::engine::load_or_compile`).

use crate::cli::PrecompileArgs;
use crate::cli::exit::{self, Failure};
use crate::service::PRECOMPILED_DIR_VARIABLE;
use crate::wasm::{components, engine};

/// Writes `DIR/<sha256>.cwasm` for the source and every built-in filter.
pub fn execute(args: &PrecompileArgs) -> Result<u8, Failure> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::failed(format!("cannot create {}: {e}", dir.display())))?;
    let portable = engine::portable_engine().map_err(|e| Failure::failed(format!("{e:#}")))?;
    let mut all: Vec<(&str, &[u8])> = vec![("source", components::SOURCE)];
    all.extend(components::FILTERS.iter().copied());
    for (name, bytes) in &all {
        let compiled = portable
            .precompile_component(bytes)
            .map_err(|e| Failure::failed(format!("cannot compile `{name}`: {e:#}")))?;
        let path = dir.join(engine::precompiled_name(bytes));
        let temporary = path.with_extension("cwasm.tmp");
        std::fs::write(&temporary, &compiled)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|e| Failure::failed(format!("cannot write {}: {e}", path.display())))?;
        tracing::info!(component = name, path = %path.display(), bytes = compiled.len(), "precompiled");
    }
    println!(
        "{}: {} components precompiled for {} (baseline CPU); run with {PRECOMPILED_DIR_VARIABLE}={}",
        dir.display(),
        all.len(),
        env!("SSE_INGEST_HOST_TARGET"),
        dir.display()
    );
    Ok(exit::OK)
}
