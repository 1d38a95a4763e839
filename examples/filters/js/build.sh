#!/usr/bin/env bash
# Builds the JavaScript filter into a component and prints its path as the last line.
#
# Needs the pinned ComponentizeJS in node_modules (`npm ci`; scripts/setup.sh --tests does
# it). build.mjs disables every WASI feature of the JavaScript runtime, so the component
# imports nothing but sse-ingest's `log`.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT_DIR:-$here/target}"
mkdir -p "$out"
node "$here/build.mjs" "$here/filter.js" "$here/../../../wit/filter" "$out/wiki_edits_js.wasm" >&2
echo "$out/wiki_edits_js.wasm"
