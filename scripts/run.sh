#!/usr/bin/env bash
# Builds (release) and runs the main job: `sse-ingest run` with the given
# flags. With none, it streams Wikimedia's recentchange events into the
# embedded default sink, files under ./sse-ingest-out. Stop it with Ctrl-C.
# The binary stays at target/release/sse-ingest; it needs no other file.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --locked --release -p sse-ingest
exec target/release/sse-ingest run "$@"
