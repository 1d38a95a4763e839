#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs what is missing, then
# checks the dependency tree (cargo deny), formatting and lints, runs every test
# (unit, conformance, end to end against real servers on 127.0.0.1), and validates
# the deployment artefacts.
#
#   scripts/test.sh            everything
#   SKIP_LINT=1 scripts/test.sh  tests only
set -euo pipefail
cd "$(dirname "$0")/.."

# A one-shot build gains nothing from incremental compilation, and its caches are the largest
# part of a fresh target/ (CI once ran out of disk). Set CARGO_INCREMENTAL=1 to keep them.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

scripts/setup.sh --tests

echo "== cargo deny (bans, licences, sources; deny.toml)"
# Offline (--frozen = --offline --locked): CI cannot fetch the advisory database, and these
# three checks need none. cargo-deny reads `cargo metadata`, which needs every crate's
# manifest: fetch them first (a no-op once anything has been built).
cargo fetch --locked --quiet
cargo deny --frozen check --hide-inclusion-graph bans licenses sources

if [ "${SKIP_LINT:-0}" != 1 ]; then
  echo "== cargo fmt --check"
  cargo fmt --all --check
  echo "== cargo clippy (host workspace)"
  cargo clippy --locked --all-targets -- -D warnings
  echo "== cargo clippy (guest components, wasm32-wasip2)"
  cargo clippy --locked --target wasm32-wasip2 --target-dir target/guests \
    -p source-component -p filter-sdk -p passthrough-filter -p types-filter -p json-match-filter \
    -p wikimedia-filter -p trap-filter -p spin-filter -p memory-hog-filter -p parser-bench \
    -p wiki-edits-filter \
    -- -D warnings
fi

echo "== one TLS crypto provider (aws-lc-rs; see docs/architecture.md#the-network)"
if cargo tree --locked -p sse-ingest -e normal --target all -i ring 2>/dev/null | grep -q '^ring '; then
  echo "ring is back in the binary's dependency tree: two rustls crypto providers" >&2
  cargo tree --locked -p sse-ingest -e normal --target all -i ring >&2
  exit 1
fi

echo "== cargo test"
# Every crate but the passthrough component, which has no native tests.
cargo test --locked --workspace --exclude passthrough-filter

echo "== deployment artefacts (cfn-lint, kubernetes-validate, deploy/tests)"
# After cargo test, which built target/debug/sse-ingest (the tests run `check` with it).
scripts/validate-deploy.sh
