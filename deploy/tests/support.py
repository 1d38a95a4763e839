"""Shared helpers for the deployment tests: load the artefacts, evaluate the few
CloudFormation intrinsics the tests need, and run `sse-ingest check`.

The templates are read with cfn-lint's own YAML decoder (cfnlint.decode), which
understands the short forms (!Ref, !Sub, !GetAtt, ...) that a plain YAML loader
rejects; the manifests with PyYAML (a dependency of cfn-lint).
"""

import os
import re
import subprocess
import tempfile
import unittest
from pathlib import Path

import yaml
from cfnlint.decode import decode

DEPLOY = Path(__file__).resolve().parent.parent
AWS = DEPLOY / "aws"
KUBERNETES = DEPLOY / "kubernetes"

STATE_DIR = "/var/lib/sse-ingest"
HEALTH_CHECK = ["CMD", "/usr/local/bin/sse-ingest", "health", "--admin", "127.0.0.1:9090"]
# Variables that would mean long-lived credentials were written into an artefact.
CREDENTIAL_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def load_template(name):
    """The template deploy/aws/NAME as plain dicts and lists (no decode errors allowed)."""
    template, matches = decode(str(AWS / name))
    if matches:
        raise AssertionError(f"{name} does not parse: {[str(m) for m in matches]}")
    return plain(template)


def plain(node):
    """cfn-lint's nodes (dict/str subclasses carrying line marks) as builtin types."""
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


def load_manifests():
    """Every document of every deploy/kubernetes/*.yaml, as (file name, document)."""
    out = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        with open(path, encoding="utf-8") as f:
            out.extend((path.name, doc) for doc in yaml.safe_load_all(f) if doc is not None)
    return out


def walk_strings(node):
    """Every string in a parsed document, keys included."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from walk_strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk_strings(v)
    elif isinstance(node, str):
        yield node


def as_list(value):
    return value if isinstance(value, list) else [value]


class Evaluator:
    """Evaluates Conditions and the string intrinsics (Ref, Fn::Sub, Fn::Join) of one
    template for given parameter values, the way CloudFormation would. Only what the
    templates use; anything else raises, so a new intrinsic cannot slip by untested."""

    PSEUDO = {
        "AWS::Region": "us-east-1",
        "AWS::AccountId": "123456789012",
        "AWS::Partition": "aws",
        "AWS::StackName": "sse-ingest-test",
    }

    def __init__(self, template, parameters=None, refs=None):
        self.template = template
        self.values = dict(self.PSEUDO)
        for name, spec in template.get("Parameters", {}).items():
            if "Default" in spec:
                self.values[name] = str(spec["Default"])
        self.values.update({k: str(v) for k, v in (parameters or {}).items()})
        # What a Ref to a resource (or GetAtt) yields, for rendering.
        self.values.update(refs or {})

    def condition(self, name):
        return self.boolean(self.template["Conditions"][name])

    def boolean(self, node):
        (fn, arg), = node.items()
        if fn == "Fn::Equals":
            a, b = (self.string(x) for x in arg)
            return a == b
        if fn == "Fn::Not":
            return not self.boolean(arg[0])
        if fn == "Fn::And":
            return all(self.boolean(x) for x in arg)
        if fn == "Fn::Or":
            return any(self.boolean(x) for x in arg)
        if fn == "Condition":
            return self.condition(arg)
        raise AssertionError(f"unsupported condition function {fn}")

    def string(self, node):
        if isinstance(node, (str, int, float)) and not isinstance(node, bool):
            return str(node)
        (fn, arg), = node.items()
        if fn == "Ref":
            return self.values[arg]
        if fn == "Fn::Join":
            delimiter, parts = arg
            return delimiter.join(self.string(p) for p in parts)
        if fn == "Fn::Sub":
            if isinstance(arg, str):
                template, variables = arg, {}
            else:
                template, variables = arg[0], {k: self.string(v) for k, v in arg[1].items()}
            values = {**self.values, **variables}
            return re.sub(r"\$\{([^}!]+)\}", lambda m: values[m.group(1)], template)
        if fn == "Fn::Select":
            index, items = arg
            return self.list(items)[int(self.string(index))]
        if fn == "Fn::If":
            return self.string(self.resolve(node))
        raise AssertionError(f"unsupported string function {fn}")

    def list(self, node):
        if isinstance(node, list):
            return [self.string(x) for x in node]
        (fn, arg), = node.items()
        if fn == "Fn::Split":
            delimiter, source = arg
            return self.string(source).split(delimiter)
        if fn == "Ref":
            return self.values[arg].split(",")
        raise AssertionError(f"unsupported list function {fn}")

    def resolve(self, node):
        """A node with its Fn::If chosen (recursively) and AWS::NoValue dropped; other
        intrinsics are left as they are."""
        if isinstance(node, list):
            out = [self.resolve(x) for x in node]
            return [x for x in out if x is not NO_VALUE]
        if isinstance(node, dict):
            if list(node) == ["Fn::If"]:
                condition, yes, no = node["Fn::If"]
                return self.resolve(yes if self.condition(condition) else no)
            if node == {"Ref": "AWS::NoValue"}:
                return NO_VALUE
            out = {k: self.resolve(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v is not NO_VALUE}
        return node


NO_VALUE = object()


def sse_ingest_bin(test: unittest.TestCase):
    """The sse-ingest binary named by SSE_INGEST_BIN; a failure (never a skip) when the
    variable is unset or names nothing, since scripts/validate-deploy.sh always sets it."""
    value = os.environ.get("SSE_INGEST_BIN")
    if not value:
        test.fail("SSE_INGEST_BIN is not set: run scripts/validate-deploy.sh, or set it to an sse-ingest binary")
    path = Path(value)
    if not (path.is_file() and os.access(path, os.X_OK)):
        test.fail(f"SSE_INGEST_BIN={value} is not an executable file (build it with cargo build)")
    return path


def assert_check_passes(test: unittest.TestCase, toml_text: str, what: str, env=None):
    """`sse-ingest check` exits 0 on this config. The admin token's variable (and those
    in `env`) are set to dummies, as a Secret or the task would set them at run time."""
    binary = sse_ingest_bin(test)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(toml_text, encoding="utf-8")
        result = subprocess.run(
            [str(binary), "check", str(path)],
            env={**os.environ, "SSE_INGEST_ADMIN_TOKEN": "test-token-not-a-secret", **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
    test.assertEqual(
        result.returncode,
        0,
        f"`sse-ingest check` refused {what}:\n{result.stdout}{result.stderr}\n--- config ---\n{toml_text}",
    )
