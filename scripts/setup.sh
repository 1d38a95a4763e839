#!/usr/bin/env bash
# Installs what building (and, with --tests, testing) needs and a fresh machine may lack.
# Idempotent: does nothing when everything is there.
#
#   scripts/setup.sh           the wasm32-wasip2 Rust target (to build)
#   scripts/setup.sh --tests   also kinesalite and dynalite, the local Kinesis and DynamoDB APIs
#                              the tests start (npm), aws-kinesis-agg (npm, to read aggregated
#                              records back), cargo-deny, which checks the dependency tree
#                              against deny.toml, and the tools that build the Python and
#                              JavaScript filter examples (componentize-py, ComponentizeJS)
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
  # The Python filter example is built by componentize-py, pinned in its requirements file
  # and installed in a venv of its own under target/ (a wheel with its own runtime: no
  # native build).
  componentize_py_version="$(sed -n 's/^componentize-py==//p' examples/filters/python/requirements.txt)"
  tools=target/tools/componentize-py
  if [ "$("$tools/bin/componentize-py" --version 2>/dev/null)" != "componentize-py $componentize_py_version" ]; then
    echo "== installing componentize-py $componentize_py_version (venv in $tools)"
    python3 -m venv "$tools"
    "$tools/bin/pip" install --quiet --disable-pip-version-check -r examples/filters/python/requirements.txt
  fi
  # The JavaScript filter example is built by ComponentizeJS (with jco), pinned with its
  # lock file in examples/filters/js.
  if [ ! -d examples/filters/js/node_modules/@bytecodealliance/componentize-js ]; then
    echo "== installing ComponentizeJS (npm ci in examples/filters/js)"
    (cd examples/filters/js && npm ci --no-audit --no-fund --ignore-scripts)
  fi
  # The --aggregate tests de-aggregate what they read back with aws-kinesis-agg, the KPL
  # format's Node.js library (pinned the same way in tests/kinesis-agg; plain JavaScript).
  if [ ! -d tests/kinesis-agg/node_modules/aws-kinesis-agg ]; then
    echo "== installing aws-kinesis-agg (npm ci in tests/kinesis-agg)"
    (cd tests/kinesis-agg && npm ci --no-audit --no-fund --ignore-scripts)
  fi
  # cargo-deny checks the dependency tree's licences, sources and bans (deny.toml). Built
  # from source at a pinned version (about 4 minutes on 2 cores, once per machine); the
  # newest release that builds with the project's rustc.
  cargo_deny_version=0.20.2
  if [ "$(cargo deny --version 2>/dev/null)" != "cargo-deny $cargo_deny_version" ]; then
    echo "== installing cargo-deny $cargo_deny_version (cargo install, built from source)"
    cargo install cargo-deny --version "$cargo_deny_version" --locked
  fi
fi
