#!/usr/bin/env bash
# Validates the deployment artefacts under deploy/: lints the CloudFormation
# templates (cfn-lint), validates the Kubernetes manifests against the API schemas
# (kubernetes-validate, strict), then runs the tests in deploy/tests, which parse
# both and check `sse-ingest check` accepts the configs they carry.
#
#   scripts/validate-deploy.sh
#   SSE_INGEST_BIN=target/release/sse-ingest scripts/validate-deploy.sh
#
# The tools live in a venv under target/ (git-ignored), made on the first run and
# again whenever deploy/requirements.txt or the Python interpreter changes; later
# runs need no network. Exits non-zero on any problem. deploy/tests/test_runs_as_deployed.py
# runs the templates' commands against kinesalite and dynalite (scripts/setup.sh --tests
# installs them; Node.js is needed), names StatefulSet pods with `unshare --uts`, and runs each
# container as its user on its read-only root (`unshare --mount`, setpriv; root).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
VENV=target/deploy-venv
REQUIREMENTS=deploy/requirements.txt
STAMP="$VENV/requirements.sha256"
# The Kubernetes version the manifests are validated against (one of those
# kubernetes-validate bundles): the oldest we claim to support.
KUBERNETES_VERSION=1.30.0
export SSE_INGEST_BIN="${SSE_INGEST_BIN:-target/debug/sse-ingest}"

if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "validate-deploy: $PYTHON is older than Python 3.11 (the tests use tomllib); set PYTHON" >&2
  exit 1
fi

# The stamp covers the pins and the interpreter, so either changing rebuilds the venv.
want="$({ cat "$REQUIREMENTS"; "$PYTHON" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
  echo "== installing $REQUIREMENTS into $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  "$VENV/bin/python" -m pip check
  echo "$want" >"$STAMP"
fi

echo "== cfn-lint ($("$VENV/bin/cfn-lint" --version))"
# Any error or warning fails (cfn-lint's exit code is a bit mask of them). The one
# warning we accept, W3002 (a local TemplateURL only works through
# `aws cloudformation package`), is ignored inside the templates that nest stacks,
# with the reason next to it.
"$VENV/bin/cfn-lint" -- deploy/aws/*.yaml
echo "ok: $(ls deploy/aws/*.yaml | wc -l) templates"

echo "== kubernetes-validate --strict (Kubernetes $KUBERNETES_VERSION)"
# --strict rejects fields the schema does not know; --quiet prints only problems,
# so any output (an unknown kind is only a warning) fails too.
out="$("$VENV/bin/kubernetes-validate" --strict --quiet -k "$KUBERNETES_VERSION" deploy/kubernetes/*.yaml 2>&1)" || {
  echo "$out" >&2
  exit 1
}
if [ -n "$out" ]; then
  echo "$out" >&2
  exit 1
fi
echo "ok: $(ls deploy/kubernetes/*.yaml | wc -l) manifests"

echo "== deploy/tests (SSE_INGEST_BIN=$SSE_INGEST_BIN)"
PYTHONDONTWRITEBYTECODE=1 "$VENV/bin/python" -m unittest discover -s deploy/tests -v
