#!/usr/bin/env bash
# Builds the Rust filter into a component and prints its path as the last line.
#
# The example is a member of this repository's workspace (it uses the SDK by path); a
# project made by `sse-ingest filters new --lang rust` builds the same way on its own.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$here/../../.."
target="${CARGO_TARGET_DIR:-$root/target}/guests"
cargo build --locked --quiet --manifest-path "$root/Cargo.toml" -p wiki-edits-filter \
  --profile guest --target wasm32-wasip2 --target-dir "$target" >&2
out="${OUT_DIR:-$here/target}"
mkdir -p "$out"
cp "$target/wasm32-wasip2/guest/wiki_edits_filter.wasm" "$out/wiki_edits_rust.wasm"
echo "$out/wiki_edits_rust.wasm"
