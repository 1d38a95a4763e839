#!/usr/bin/env bash
# Builds (release) and runs the main job: `sse-ingest run` with the given
# flags. With none, it streams Wikimedia's recentchange events into the
# embedded default sink, files under ./sse-ingest-out. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec cargo run --locked --release -p sse-ingest -- run "$@"
