#!/usr/bin/env bash
# Builds the filter into a component and prints its path as the last line.
# Installs the pinned ComponentizeJS first if node_modules is missing (`npm ci`).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -d "$here/node_modules/@bytecodealliance/componentize-js" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --ignore-scripts) >&2
fi
out="${OUT_DIR:-$here/target}"
mkdir -p "$out"
node "$here/build.mjs" "$here/filter.js" "$here/wit/filter" "$out/my_filter.wasm" >&2
echo "$out/my_filter.wasm"
