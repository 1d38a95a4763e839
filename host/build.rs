//! Builds the built-in guest components for `wasm32-wasip2` so that the host
//! binary can embed them (`include_bytes!`) and `sse-ingest run` needs no
//! extra files.
//!
//! The guests are members of this workspace but are built by a nested cargo
//! with its own target directory (`target/guests`), so the host's build and the
//! guests' build never wait on each other's lock, and a debug and a release
//! host share one guest build.

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (cargo package, file stem of its component, env var the host reads).
const GUESTS: &[(&str, &str, &str)] = &[
    (
        "source-component",
        "source_component",
        "SSE_INGEST_SOURCE_WASM",
    ),
    (
        "passthrough-filter",
        "passthrough_filter",
        "SSE_INGEST_FILTER_PASSTHROUGH_WASM",
    ),
    (
        "types-filter",
        "types_filter",
        "SSE_INGEST_FILTER_TYPES_WASM",
    ),
    (
        "json-match-filter",
        "json_match_filter",
        "SSE_INGEST_FILTER_JSON_MATCH_WASM",
    ),
    (
        "wikimedia-filter",
        "wikimedia_filter",
        "SSE_INGEST_FILTER_WIKIMEDIA_WASM",
    ),
    // Misbehaving filters for the sandbox tests: located by path, never embedded
    // (see `components::testing_filter_path`).
    ("trap-filter", "trap_filter", "SSE_INGEST_TESTING_TRAP_WASM"),
    ("spin-filter", "spin_filter", "SSE_INGEST_TESTING_SPIN_WASM"),
    (
        "memory-hog-filter",
        "memory_hog_filter",
        "SSE_INGEST_TESTING_MEMORY_HOG_WASM",
    ),
    // The Rust filter example (examples/filters/rust), for the polyglot-filter tests.
    (
        "wiki-edits-filter",
        "wiki_edits_filter",
        "SSE_INGEST_EXAMPLE_RUST_WASM",
    ),
    // The parser's throughput inside the sandbox (`--bench guest_parser`): a WASI command.
    (
        "parser-bench",
        "parser_bench",
        "SSE_INGEST_BENCH_PARSER_WASM",
    ),
];

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .parent()
        .expect("host/ lives inside the workspace")
        .to_path_buf();
    for watched in [
        "guest",
        "wit",
        "lib/sse-parser",
        "examples/filters/rust",
        "Cargo.lock",
        "Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                root.join(dir)
            }
        })
        .unwrap_or_else(|| root.join("target"));
    let guest_target = target_dir.join("guests");

    build_guests(&root, &guest_target);

    // `sse-ingest precompile` compiles for this target's baseline CPU (no host features).
    if let Ok(target) = env::var("TARGET") {
        println!("cargo:rustc-env=SSE_INGEST_HOST_TARGET={target}");
    }

    let out = guest_target.join("wasm32-wasip2").join("guest");
    for (_, stem, var) in GUESTS {
        let path = out.join(format!("{stem}.wasm"));
        assert!(
            path.exists(),
            "the guest build did not produce {}",
            path.display()
        );
        println!("cargo:rustc-env={var}={}", path.display());
    }
}

fn build_guests(root: &Path, guest_target: &Path) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(root)
        .args([
            "build",
            "--locked",
            "--profile",
            "guest",
            "--target",
            "wasm32-wasip2",
        ])
        .arg("--target-dir")
        .arg(guest_target);
    for (package, _, _) in GUESTS {
        command.args(["-p", package]);
    }
    // The outer build's settings are for the host target; none of them apply
    // to the guests (and a clippy wrapper would lint them twice).
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
    ] {
        command.env_remove(var);
    }
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if ["CARGO_PROFILE_", "CARGO_CFG_", "CARGO_FEATURE_"]
            .iter()
            .any(|prefix| key.starts_with(prefix))
        {
            command.env_remove(key);
        }
    }
    let status = command
        .status()
        .expect("could not start cargo to build the guest components");
    assert!(
        status.success(),
        "building the guest components failed ({status}); is the wasm32-wasip2 target installed? \
         (`rustup target add wasm32-wasip2`, which scripts/test.sh does for you)"
    );
}
