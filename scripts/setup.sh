#!/usr/bin/env bash
# Installs what building and testing need and a fresh machine may lack.
# Idempotent: does nothing when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "== installing the wasm32-wasip2 Rust target"
  rustup target add wasm32-wasip2
fi

# kinesis-producer's tests and benchmark run against kinesalite, a local Kinesis API server
# (npm package, pinned with its lock file in tests/kinesalite; in-memory, so no native
# build: install scripts are skipped).
if [ ! -d tests/kinesalite/node_modules/kinesalite ]; then
  echo "== installing kinesalite (npm ci in tests/kinesalite)"
  (cd tests/kinesalite && npm ci --no-audit --no-fund --ignore-scripts)
fi
