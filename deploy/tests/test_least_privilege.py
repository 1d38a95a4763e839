"""Least privilege, both ways: the AWS API calls the Rust code makes (read from the
sources under host/src and lib/*/src) are exactly the Kinesis and DynamoDB actions that
the ECS task role (deploy/aws/sse-ingest.yaml) and the Kubernetes service account's IAM
policy (deploy/kubernetes/iam/sse-ingest-policy.json) grant. A call without a grant
fails at run time; a grant without a call is a permission nobody needs.

A call is an SDK client's fluent operation method (`client.put_records()`,
`.get_item()` split over lines too) in a source file that uses that SDK's crate. The
operation names are the SDK crates' own (their `src/operation/` modules) at the versions
Cargo.toml pins; a version bump fails test_operation_tables_match_the_pinned_sdks until
the tables below are checked against the new crate. Test-only modules (`#[cfg(test)]`)
are left out: they run against local emulators, never with these roles.

Firehose's role is not compared here: it is what Firehose itself needs to read the
stream and write the bucket (test_cloudformation checks it)."""

import json
import re
import tomllib
import unittest
from pathlib import Path

from support import AWS, KUBERNETES, as_list, load_template

ROOT = AWS.parent.parent
SOURCE_DIRS = [ROOT / "host" / "src", *sorted((ROOT / "lib").glob("*/src"))]
IRSA_POLICY = KUBERNETES / "iam" / "sse-ingest-policy.json"

# The operations of each SDK crate at the pinned version (snake_case method names, as
# listed by the crate's src/operation/ directory). IAM's action is the PascalCase name.
SDKS = {
    "aws-sdk-kinesis": {
        "version": "=1.130.0",
        "crate": "aws_sdk_kinesis",
        "iam": "kinesis",
        "operations": """
            add_tags_to_stream create_channel create_stream decrease_stream_retention_period
            delete_channel delete_resource_policy delete_stream deregister_stream_consumer
            describe_account_settings describe_channel describe_limits describe_stream
            describe_stream_consumer describe_stream_summary disable_enhanced_monitoring
            enable_enhanced_monitoring get_records get_resource_policy get_shard_iterator
            increase_stream_retention_period list_channels list_shards list_stream_consumers
            list_streams list_tags_for_resource list_tags_for_stream merge_shards put_record
            put_records put_resource_policy register_stream_consumer remove_tags_from_stream
            split_shard start_stream_encryption stop_stream_encryption subscribe_to_shard
            tag_resource untag_resource update_account_settings update_channel
            update_max_record_size update_shard_count update_stream_mode
            update_stream_record_distribution_strategy update_stream_warm_throughput
        """.split(),
    },
    "aws-sdk-dynamodb": {
        "version": "=1.136.0",
        "crate": "aws_sdk_dynamodb",
        "iam": "dynamodb",
        "operations": """
            batch_execute_statement batch_get_item batch_write_item create_backup
            create_global_table create_table delete_backup delete_item delete_resource_policy
            delete_table describe_backup describe_continuous_backups
            describe_contributor_insights describe_endpoints describe_export
            describe_global_table describe_global_table_settings describe_import
            describe_kinesis_streaming_destination describe_limits describe_table
            describe_table_replica_auto_scaling describe_time_to_live
            disable_kinesis_streaming_destination enable_kinesis_streaming_destination
            execute_statement execute_transaction export_table_to_point_in_time get_item
            get_resource_policy import_table list_backups list_contributor_insights
            list_exports list_global_tables list_imports list_tables list_tags_of_resource
            put_item put_resource_policy query restore_table_from_backup
            restore_table_to_point_in_time scan search_vectors tag_resource
            transact_get_items transact_write_items untag_resource update_continuous_backups
            update_contributor_insights update_global_table update_global_table_settings
            update_item update_kinesis_streaming_destination update_table
            update_table_replica_auto_scaling update_time_to_live
        """.split(),
    },
}
SERVICES = {sdk["iam"] for sdk in SDKS.values()}


def iam_action(service, operation):
    return f"{service}:" + "".join(word.capitalize() for word in operation.split("_"))


def without_test_modules(text):
    """The source without `#[cfg(test)]` items (a `mod x { ... }` block, brace-matched)."""
    out = []
    pos = 0
    for match in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{", text):
        if match.start() < pos:
            continue
        out.append(text[pos : match.start()])
        depth = 1
        i = match.end()
        while depth and i < len(text):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        pos = i
    out.append(text[pos:])
    return "".join(out)


def calls_in(text):
    """The IAM actions of the SDK calls in one Rust source file's text."""
    text = without_test_modules(text)
    found = set()
    for sdk in SDKS.values():
        if not re.search(rf"\b{sdk['crate']}\b", text):
            continue
        for operation in sdk["operations"]:
            if re.search(rf"\.\s*{operation}\s*\(\s*\)", text):
                found.add(iam_action(sdk["iam"], operation))
    return found


def calls_in_the_code():
    """Every SDK call of the sources, as {IAM action: [files]}."""
    calls = {}
    for directory in SOURCE_DIRS:
        for path in sorted(directory.rglob("*.rs")):
            for action in calls_in(path.read_text(encoding="utf-8")):
                calls.setdefault(action, []).append(str(path.relative_to(ROOT)))
    return calls


def granted(statements):
    """The Kinesis and DynamoDB actions Allowed by these statements."""
    actions = set()
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        for action in as_list(statement["Action"]):
            if action.split(":")[0] in SERVICES:
                actions.add(action)
    return actions


class Scanner(unittest.TestCase):
    """The scanner itself finds calls, and only calls of the SDK a file uses."""

    def test_finds_a_call_split_over_lines(self):
        text = "use aws_sdk_dynamodb::Client;\nlet x = self\n    .client\n    .update_item()\n    .send();\n"
        self.assertEqual(calls_in(text), {"dynamodb:UpdateItem"})

    def test_ignores_files_without_the_sdk_and_test_modules(self):
        self.assertEqual(calls_in("let q = url.query().is_some();\n"), set())
        text = (
            "use aws_sdk_kinesis::Client;\nfn f(c: &Client) { c.put_records(); }\n"
            "#[cfg(test)]\nmod tests {\n    fn g(c: &Client) { if true { c.create_stream(); } }\n}\n"
            "fn h(c: &Client) { c.list_shards(); }\n"
        )
        self.assertEqual(calls_in(text), {"kinesis:PutRecords", "kinesis:ListShards"})

    def test_iam_action_names(self):
        self.assertEqual(iam_action("kinesis", "describe_stream_summary"), "kinesis:DescribeStreamSummary")
        self.assertEqual(iam_action("dynamodb", "get_item"), "dynamodb:GetItem")


class CodeAndGrants(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.calls = calls_in_the_code()

    def test_operation_tables_match_the_pinned_sdks(self):
        with open(ROOT / "Cargo.toml", "rb") as f:
            dependencies = tomllib.load(f)["workspace"]["dependencies"]
        for name, sdk in SDKS.items():
            self.assertEqual(dependencies[name]["version"], sdk["version"], f"{name}: update the table in this file")

    def test_the_code_makes_calls(self):
        # A scanner that finds nothing would make the comparisons below vacuous.
        self.assertIn("kinesis:PutRecords", self.calls)
        self.assertIn("dynamodb:PutItem", self.calls)

    def assert_grants_are_the_calls(self, grants, where):
        calls = set(self.calls)
        missing = {action: self.calls[action] for action in calls - grants}
        self.assertFalse(missing, f"{where} lacks grants for calls the code makes: {missing}")
        self.assertFalse(grants - calls, f"{where} grants actions the code never calls")
        self.assertEqual(grants, calls)

    def test_ecs_task_role_grants_exactly_the_calls(self):
        role = load_template("sse-ingest.yaml")["Resources"]["TaskRole"]
        statements = [s for p in role["Properties"]["Policies"] for s in p["PolicyDocument"]["Statement"]]
        self.assert_grants_are_the_calls(granted(statements), "the ECS task role")

    def test_kubernetes_service_account_policy_grants_exactly_the_calls(self):
        policy = json.loads(IRSA_POLICY.read_text(encoding="utf-8"))
        self.assert_grants_are_the_calls(granted(policy["Statement"]), IRSA_POLICY.name)
        for statement in policy["Statement"]:
            for value in as_list(statement["Action"]) + as_list(statement["Resource"]):
                self.assertNotIn("*", value)
            service = {a.split(":")[0] for a in as_list(statement["Action"])}
            (service,) = service
            self.assertTrue(statement["Resource"].startswith(f"arn:aws:{service}:REGION:ACCOUNT:"))


if __name__ == "__main__":
    unittest.main()
