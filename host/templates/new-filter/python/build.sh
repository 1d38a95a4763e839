#!/usr/bin/env bash
# Builds the filter into a component and prints its path as the last line.
# Needs componentize-py (`pip install -r requirements.txt`) on PATH, or COMPONENTIZE_PY naming
# it. `--stub-wasi` leaves the component no WASI import: filters get no clock, randomness,
# files or network, and sse-ingest refuses a component that asks for them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT_DIR:-$here/target}"
mkdir -p "$out"
"${COMPONENTIZE_PY:-componentize-py}" -d "$here/wit/filter" -w filter \
  componentize --stub-wasi -p "$here" app -o "$out/my_filter.wasm" >&2
echo "$out/my_filter.wasm"
