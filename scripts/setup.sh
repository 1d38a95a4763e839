#!/usr/bin/env bash
# Installs what building and testing need and a fresh machine may lack.
# Idempotent: does nothing when everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "== installing the wasm32-wasip2 Rust target"
  rustup target add wasm32-wasip2
fi
