#!/usr/bin/env bash
# Builds the JavaScript filter and checks it against the recorded events with `test-filter`.
# SSE_INGEST names the sse-ingest binary (default: on PATH).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
wasm="$("$here/build.sh" | tail -n 1)"
"${SSE_INGEST:-sse-ingest}" test-filter "$wasm" --input "$here/../events.ndjson" \
  --expect "$here/../expected.ndjson" --filter-config wikis=enwiki,dewiki
