#!/usr/bin/env bash
# Installs what building (and, with --tests, testing) needs and a fresh machine may lack.
# Idempotent: does nothing when everything is there.
#
#   scripts/setup.sh           the wasm32-wasip2 Rust target (to build)
#   scripts/setup.sh --tests   also kinesalite and dynalite, the local Kinesis and DynamoDB APIs
#                              the tests start (npm)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "== installing the wasm32-wasip2 Rust target"
  rustup target add wasm32-wasip2
fi

if [ "${1:-}" = "--tests" ]; then
  # kinesis-producer's tests and benchmark run against kinesalite, a local Kinesis API server
  # (npm package, pinned with its lock file in tests/kinesalite; in-memory, so no native
  # build: install scripts are skipped).
  if [ ! -d tests/kinesalite/node_modules/kinesalite ]; then
    echo "== installing kinesalite (npm ci in tests/kinesalite)"
    (cd tests/kinesalite && npm ci --no-audit --no-fund --ignore-scripts)
  fi
  # The DynamoDB checkpoint store's tests run against dynalite, a local DynamoDB API server
  # (pinned the same way in tests/dynalite; in memory, no native build).
  if [ ! -d tests/dynalite/node_modules/dynalite ]; then
    echo "== installing dynalite (npm ci in tests/dynalite)"
    (cd tests/dynalite && npm ci --no-audit --no-fund --ignore-scripts)
  fi
fi
