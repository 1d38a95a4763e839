#!/usr/bin/env bash
# Builds the filter into a component and prints its path as the last line.
# Needs Rust with the wasm32-wasip2 target (`rustup target add wasm32-wasip2`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cargo build --quiet --release --target wasm32-wasip2 --manifest-path "$here/Cargo.toml" >&2
target="${CARGO_TARGET_DIR:-$here/target}"
case "$target" in /*) ;; *) target="$here/$target" ;; esac
echo "$target/wasm32-wasip2/release/my_filter.wasm"
