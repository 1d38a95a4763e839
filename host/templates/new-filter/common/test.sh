#!/usr/bin/env bash
# Builds the filter and checks it with `sse-ingest test-filter`: events.ndjson holds recorded
# events (one event's data a line, or lines as `sse-ingest run --sink file:DIR` writes them),
# expected.ndjson what the filter must write for them (out of the box: every event unchanged).
# SSE_INGEST names the sse-ingest binary (default: on PATH).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wasm="$("$here/build.sh" | tail -n 1)"
"${SSE_INGEST:-sse-ingest}" test-filter "$wasm" --input "$here/events.ndjson" \
  --expect "$here/expected.ndjson"
