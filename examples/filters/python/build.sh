#!/usr/bin/env bash
# Builds the Python filter into a component and prints its path as the last line.
#
# Needs componentize-py (python/requirements.txt) on PATH, or COMPONENTIZE_PY naming it.
# `--stub-wasi` replaces every WASI import of the Python runtime with a stub that traps, so
# the component imports nothing but sse-ingest's `log`: filters get no clock, randomness,
# files or network, and the host refuses a component that asks for them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${OUT_DIR:-$here/target}"
mkdir -p "$out"
"${COMPONENTIZE_PY:-componentize-py}" -d "$here/../../../wit/filter" -w filter \
  componentize --stub-wasi -p "$here" app -o "$out/wiki_edits_python.wasm" >&2
echo "$out/wiki_edits_python.wasm"
