"""deploy/aws/deploy.sh --dry-run: the docker and aws calls it would make, printed one a
line (`+ ` then the arguments shell-quoted), checked argument by argument. The dry run
needs neither: `aws` and `docker` on PATH here are stubs that fail the test if called."""

import os
import shutil
import subprocess
import tempfile
import unittest
from pathlib import Path

import yaml

from support import AWS

DEPLOY_SH = AWS / "deploy.sh"
ROOT = AWS.parent.parent
PIPELINES = (
    'defaults.format = "envelope"\n'
    "\n"
    "[[pipeline]]\n"
    'name = "recentchange"\n'
    'url = "https://stream.wikimedia.org/v2/stream/recentchange"\n'
    "header = [\"Authorization: Bearer ${WIKI_TOKEN}\", \"X-Quote: it's\"]\n"
)


def argv_of(line):
    """The arguments of one printed call, as bash reads them."""
    result = subprocess.run(
        ["bash", "-c", 'eval "set -- $1"; printf "%s\\0" "$@"', "_", line],
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout.split("\0")[:-1]


class DryRun(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        tmp = Path(cls.tmp.name)
        stubs = tmp / "bin"
        stubs.mkdir()
        cls.called = tmp / "called"
        for tool in ("aws", "docker"):
            stub = stubs / tool
            stub.write_text(f'#!/bin/sh\necho "{tool} $*" >> "{cls.called}"\nexit 97\n')
            stub.chmod(0o755)
        cls.pipelines = tmp / "pipelines.toml"
        cls.pipelines.write_text(PIPELINES, encoding="utf-8")
        cls.env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}"}
        for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
            cls.env.pop(name, None)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()
        for stack in ("dry-run-test", "dry-run-test-subnets"):
            shutil.rmtree(ROOT / "target" / "deploy-build" / stack, ignore_errors=True)

    def dry_run(self, *extra, stack="dry-run-test"):
        args = [
            "bash", str(DEPLOY_SH), "--dry-run",
            "--tag", "abc1234",
            "--pipelines", str(self.pipelines),
            "--stack", stack,
            "--artefact-bucket", "artefacts",
            "--region", "eu-west-1",
            *extra,
        ]
        result = subprocess.run(args, capture_output=True, text=True, env=self.env, timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertFalse(self.called.exists(), f"the dry run called: {self.called.read_text() if self.called.exists() else ''}")
        lines = result.stdout.splitlines()
        for line in lines:
            self.assertTrue(line.startswith("+ "), f"not a printed call: {line!r}")
        return [argv_of(line[2:]) for line in lines]

    def test_every_call_in_order(self):
        calls = self.dry_run("--shards", "3", "--account", "123456789012", "--alarm-topic", "arn:aws:sns:eu-west-1:123456789012:pager")
        registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com"
        image = f"{registry}/sse-ingest:abc1234"
        build = ROOT / "target" / "deploy-build" / "dry-run-test"
        self.assertEqual([c[:3] for c in calls], [
            ["aws", "ecr", "describe-repositories"],
            ["aws", "ecr", "create-repository"],
            ["aws", "ecr", "get-login-password"],
            ["docker", "login", "--username"],
            ["docker", "buildx", "build"],
            ["aws", "cloudformation", "package"],
            ["aws", "cloudformation", "deploy"],
            ["aws", "cloudformation", "describe-stacks"],
        ])
        self.assertEqual(calls[3], ["docker", "login", "--username", "AWS", "--password-stdin", registry])
        self.assertEqual(
            calls[4],
            ["docker", "buildx", "build", "--file", str(ROOT / "deploy/Dockerfile"), "--platform", "linux/amd64",
             "--tag", image, "--push", str(ROOT)],
        )
        self.assertEqual(
            calls[5],
            ["aws", "cloudformation", "package", "--region", "eu-west-1",
             "--template-file", str(build / "sse-ingest-vpc.yaml"),
             "--s3-bucket", "artefacts", "--s3-prefix", "dry-run-test",
             "--output-template-file", str(build / "packaged.yaml")],
        )
        deploy = calls[6]
        overrides = deploy[deploy.index("--parameter-overrides") + 1:]
        self.assertEqual(
            deploy[: deploy.index("--parameter-overrides")],
            ["aws", "cloudformation", "deploy", "--region", "eu-west-1",
             "--template-file", str(build / "packaged.yaml"), "--stack-name", "dry-run-test",
             "--capabilities", "CAPABILITY_IAM", "--no-fail-on-empty-changeset"],
        )
        self.assertEqual(
            overrides,
            [f"ContainerImage={image}", "ShardCount=3", "CpuArchitecture=X86_64",
             # The pipelines file, embedded whole (its last newline aside), ${VAR} and quotes untouched.
             "PipelinesConfig=" + PIPELINES.rstrip("\n"),
             "AlarmTopicArn=arn:aws:sns:eu-west-1:123456789012:pager"],
        )
        # The shards template it packages is the one for 3 shards.
        shards = yaml.safe_load((build / "sse-ingest-shards.yaml").read_text().replace("!Ref", ""))
        self.assertEqual(list(shards["Resources"]), ["Shard0", "Shard1", "Shard2"])
        self.assertEqual(shards["Parameters"]["ShardCount"]["AllowedValues"], [3])

    def test_existing_subnets_arm64_skip_build_and_extra_parameters(self):
        calls = self.dry_run(
            "--subnets", "subnet-a,subnet-b", "--security-groups", "sg-1", "--platform", "linux/arm64",
            "--skip-build", "--parameter", "TaskCpu=512", "--parameter", "TaskMemory=1024",
            stack="dry-run-test-subnets",
        )
        # No account given: STS is asked (printed), and no image is built.
        self.assertEqual(calls[0], ["aws", "sts", "get-caller-identity", "--query", "Account", "--output", "text"])
        self.assertEqual([c[:3] for c in calls[1:]], [
            ["aws", "cloudformation", "package"],
            ["aws", "cloudformation", "deploy"],
            ["aws", "cloudformation", "describe-stacks"],
        ])
        package = calls[1]
        self.assertEqual(
            package[package.index("--template-file") + 1],
            str(ROOT / "target/deploy-build/dry-run-test-subnets/sse-ingest.yaml"),
        )
        deploy = calls[2]
        overrides = deploy[deploy.index("--parameter-overrides") + 1:]
        self.assertEqual(overrides[0], "ContainerImage=ACCOUNT.dkr.ecr.eu-west-1.amazonaws.com/sse-ingest:abc1234")
        self.assertEqual(overrides[1:3], ["ShardCount=1", "CpuArchitecture=ARM64"])
        self.assertEqual(overrides[4:], ["Subnets=subnet-a,subnet-b", "SecurityGroups=sg-1", "TaskCpu=512", "TaskMemory=1024"])

    def test_refuses_what_would_fail_later(self):
        for extra, message in [
            (["--shards", "0"], "--shards must be a positive integer"),
            (["--subnets", "subnet-a"], "--subnets and --security-groups go together"),
            (["--platform", "linux/386"], "--platform must be"),
        ]:
            result = subprocess.run(
                ["bash", str(DEPLOY_SH), "--dry-run", "--tag", "t", "--pipelines", str(self.pipelines), "--stack", "s",
                 "--artefact-bucket", "b", "--region", "eu-west-1", *extra],
                capture_output=True, text=True, env=self.env,
            )
            self.assertEqual(result.returncode, 2, extra)
            self.assertIn(message, result.stderr)
            self.assertEqual(result.stdout, "")


if __name__ == "__main__":
    unittest.main()
