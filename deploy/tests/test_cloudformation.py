"""The CloudFormation templates of deploy/aws, parsed (cfnlint.decode) and checked
resource by resource: what issue #13 asks of each, and least privilege."""

import json
import re
import subprocess
import tomllib
import unittest

import yaml

from support import (
    CREDENTIAL_NAMES,
    HEALTH_CHECK,
    STATE_DIR,
    Evaluator,
    as_list,
    assert_check_passes,
    load_template,
    walk_strings,
    AWS,
)

MAIN = "sse-ingest.yaml"
SHARD = "sse-ingest-shard.yaml"
SHARDS = "sse-ingest-shards.yaml"
VPC = "sse-ingest-vpc.yaml"
DEPLOY_SH = AWS / "deploy.sh"
ROOT = AWS.parent.parent

# What the task role grants on each resource; test_least_privilege.py checks that these
# are exactly the calls the Rust code makes.
KINESIS_PRODUCER_ACTIONS = {"kinesis:PutRecords", "kinesis:DescribeStreamSummary", "kinesis:ListShards"}
CHECKPOINT_ACTIONS = {"dynamodb:BatchGetItem", "dynamodb:GetItem", "dynamodb:PutItem"}
METRICS_LOG_STREAMS = {
    "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:${MetricsLogGroup}:*"
}


def resources_of_type(template, type_name):
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_name}


def statements(role, evaluator=None):
    """Every statement of a role's inline policies, with their Fn::If chosen for the
    evaluator's parameters (the defaults without one); managed policies are refused."""
    props = role["Properties"]
    assert "ManagedPolicyArns" not in props, "managed policies are broader than needed"
    out = []
    for policy in props.get("Policies", []):
        out.extend(policy["PolicyDocument"]["Statement"])
    if evaluator is not None:
        out = evaluator.resolve(out)
    return out


def container(task, name):
    (found,) = [c for c in task["Properties"]["ContainerDefinitions"] if c["Name"] == name]
    return found


def shards_template(count):
    """deploy.sh's shards template for COUNT shards, as text."""
    return subprocess.run(
        ["bash", str(DEPLOY_SH), "shards-template", str(count)], capture_output=True, text=True, check=True
    ).stdout


class Main(unittest.TestCase):
    """sse-ingest.yaml: the stack in existing subnets (nested by the VPC one)."""

    @classmethod
    def setUpClass(cls):
        cls.t = load_template(MAIN)
        cls.r = cls.t["Resources"]
        cls.p = cls.t["Parameters"]

    def test_parameters_mirror_the_old_sample_and_add_ours(self):
        for name in [
            "S3StorageBucket",
            "S3StorageBucketPrefix",
            "S3StorageBucketErrorPrefix",
            "Subnets",
            "SecurityGroups",
            "ContainerImage",
            "PipelinesConfig",
            "ShardCount",
            "StreamMode",
            "StreamShardCount",
            "LogRetentionDays",
        ]:
            self.assertIn(name, self.p)
        self.assertEqual(self.p["Subnets"]["Type"], "List<AWS::EC2::Subnet::Id>")
        self.assertEqual(self.p["SecurityGroups"]["Type"], "List<AWS::EC2::SecurityGroup::Id>")
        self.assertEqual(set(self.p["StreamMode"]["AllowedValues"]), {"PROVISIONED", "ON_DEMAND"})

    def test_kinesis_stream_is_encrypted_and_sized_by_parameters(self):
        (stream,) = resources_of_type(self.t, "AWS::Kinesis::Stream").values()
        props = stream["Properties"]
        self.assertEqual(props["StreamEncryption"], {"EncryptionType": "KMS", "KeyId": "alias/aws/kinesis"})
        self.assertEqual(props["StreamModeDetails"], {"StreamMode": {"Ref": "StreamMode"}})
        # A shard count only in provisioned mode (on-demand refuses one).
        self.assertEqual(
            props["ShardCount"],
            {"Fn::If": ["ProvisionedStream", {"Ref": "StreamShardCount"}, {"Ref": "AWS::NoValue"}]},
        )
        for mode, expected in [("PROVISIONED", True), ("ON_DEMAND", False)]:
            self.assertEqual(Evaluator(self.t, {"StreamMode": mode}).condition("ProvisionedStream"), expected)

    def test_bucket_is_encrypted_private_and_retained(self):
        bucket = self.r["Bucket"]
        self.assertEqual(bucket["Condition"], "CreateBucket")
        self.assertEqual(bucket["DeletionPolicy"], "Retain")
        self.assertEqual(bucket["UpdateReplacePolicy"], "Retain")
        props = bucket["Properties"]
        (rule,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        self.assertIn(rule["ServerSideEncryptionByDefault"]["SSEAlgorithm"], {"AES256", "aws:kms"})
        self.assertEqual(
            props["PublicAccessBlockConfiguration"],
            {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
        )
        # The bucket is made only when no existing one is named.
        self.assertTrue(Evaluator(self.t).condition("CreateBucket"))
        self.assertFalse(Evaluator(self.t, {"S3StorageBucket": "mine"}).condition("CreateBucket"))

    def test_bucket_policy_refuses_plain_http(self):
        (statement,) = self.r["BucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
        self.assertEqual(statement["Effect"], "Deny")
        self.assertEqual(statement["Condition"], {"Bool": {"aws:SecureTransport": "false"}})

    def test_firehose_reads_the_stream_into_the_bucket(self):
        (firehose,) = resources_of_type(self.t, "AWS::KinesisFirehose::DeliveryStream").values()
        props = firehose["Properties"]
        self.assertEqual(props["DeliveryStreamType"], "KinesisStreamAsSource")
        source = props["KinesisStreamSourceConfiguration"]
        self.assertEqual(source["KinesisStreamARN"], {"Fn::GetAtt": ["Stream", "Arn"]})
        self.assertEqual(source["RoleARN"], {"Fn::GetAtt": ["FirehoseRole", "Arn"]})

        dest = props["ExtendedS3DestinationConfiguration"]
        self.assertEqual(
            dest["BucketARN"],
            {
                "Fn::If": [
                    "CreateBucket",
                    {"Fn::GetAtt": ["Bucket", "Arn"]},
                    {"Fn::Sub": "arn:${AWS::Partition}:s3:::${S3StorageBucket}"},
                ]
            },
        )
        self.assertEqual(dest["RoleARN"], {"Fn::GetAtt": ["FirehoseRole", "Arn"]})
        self.assertEqual(dest["Prefix"], {"Ref": "S3StorageBucketPrefix"})
        self.assertEqual(dest["ErrorOutputPrefix"], {"Ref": "S3StorageBucketErrorPrefix"})
        self.assertIn("CompressionFormat", dest)
        # Objects are encrypted by the bucket's default encryption (checked above);
        # Firehose asks for no key of its own.
        self.assertEqual(dest["EncryptionConfiguration"], {"NoEncryptionConfig": "NoEncryption"})
        self.assertTrue(dest["CloudWatchLoggingOptions"]["Enabled"])

    def test_firehose_prefixes_default_to_timestamped_ones(self):
        data = self.p["S3StorageBucketPrefix"]["Default"]
        error = self.p["S3StorageBucketErrorPrefix"]["Default"]
        self.assertIn("!{timestamp:yyyy/MM/dd/HH}/", data)
        self.assertTrue(data.endswith("/"))
        # Firehose requires the error-output-type expression when the data prefix has expressions.
        self.assertIn("!{firehose:error-output-type}", error)
        self.assertTrue(error.endswith("/"))
        self.assertNotEqual(data.split("/")[0], error.split("/")[0])

    def test_firehose_appends_a_newline_to_every_record(self):
        (firehose,) = resources_of_type(self.t, "AWS::KinesisFirehose::DeliveryStream").values()
        processing = firehose["Properties"]["ExtendedS3DestinationConfiguration"]["ProcessingConfiguration"]
        self.assertTrue(processing["Enabled"])
        self.assertEqual(
            processing["Processors"],
            [
                {
                    "Type": "AppendDelimiterToRecord",
                    # Firehose's own escape: a backslash and an n, not a newline character.
                    "Parameters": [{"ParameterName": "Delimiter", "ParameterValue": "\\n"}],
                }
            ],
        )

    def test_checkpoint_table(self):
        (name, table), = resources_of_type(self.t, "AWS::DynamoDB::Table").items()
        self.assertEqual(name, "CheckpointTable")
        self.assertEqual(table["DeletionPolicy"], "Retain")
        self.assertEqual(table["UpdateReplacePolicy"], "Retain")
        props = table["Properties"]
        self.assertEqual(props["KeySchema"], [{"AttributeName": "pipeline", "KeyType": "HASH"}])
        self.assertEqual(props["AttributeDefinitions"], [{"AttributeName": "pipeline", "AttributeType": "S"}])
        self.assertEqual(props["BillingMode"], "PAY_PER_REQUEST")
        self.assertEqual(props["PointInTimeRecoverySpecification"], {"PointInTimeRecoveryEnabled": True})
        self.assertIs(props["DeletionProtectionEnabled"], True)

    def test_log_groups_have_a_retention_and_outlive_the_stack(self):
        groups = resources_of_type(self.t, "AWS::Logs::LogGroup")
        self.assertEqual(set(groups), {"LogGroup", "FirehoseLogGroup", "MetricsLogGroup"})
        for group in groups.values():
            self.assertEqual(group["Properties"]["RetentionInDays"], {"Ref": "LogRetentionDays"})
            self.assertEqual(group["DeletionPolicy"], "Retain")
            self.assertEqual(group["UpdateReplacePolicy"], "Retain")
        retention = self.p["LogRetentionDays"]
        self.assertIn(retention["Default"], retention["AllowedValues"])

    def test_shards_are_one_nested_stack_of_the_generated_template(self):
        stacks = resources_of_type(self.t, "AWS::CloudFormation::Stack")
        self.assertEqual(set(stacks), {"Shards"})
        props = stacks["Shards"]["Properties"]
        self.assertEqual(props["TemplateURL"], SHARDS)
        params = props["Parameters"]
        self.assertEqual(set(params), set(load_template(SHARDS)["Parameters"]))
        self.assertEqual(params["ShardCount"], {"Ref": "ShardCount"})
        self.assertEqual(params["TaskRoleArn"], {"Fn::GetAtt": ["TaskRole", "Arn"]})
        self.assertEqual(params["ExecutionRoleArn"], {"Fn::GetAtt": ["ExecutionRole", "Arn"]})
        self.assertEqual(params["LogGroupName"], {"Ref": "LogGroup"})
        self.assertEqual(params["MetricsLogGroupName"], {"Ref": "MetricsLogGroup"})
        self.assertEqual(params["StreamName"], {"Ref": "Stream"})
        self.assertEqual(params["TableName"], {"Ref": "CheckpointTable"})
        self.assertEqual(params["DeploymentName"], {"Ref": "AWS::StackName"})
        # The user's text goes through as is (no Fn::Sub on it anywhere).
        self.assertEqual(params["PipelinesConfig"], {"Ref": "PipelinesConfig"})

    def test_shard_count_has_no_cap(self):
        spec = self.p["ShardCount"]
        self.assertEqual((spec["Type"], spec["MinValue"]), ("Number", 1))
        self.assertNotIn("MaxValue", spec)
        self.assertNotIn("AllowedValues", spec)

    def test_task_role_may_only_produce_to_its_stream_and_keep_checkpoints(self):
        role = self.r["TaskRole"]
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        self.assertEqual(trust["Principal"], {"Service": "ecs-tasks.amazonaws.com"})
        grants = {}
        for statement in statements(role):
            self.assertEqual(statement["Effect"], "Allow")
            self.assertNotIn("NotAction", statement)
            self.assertNotIn("NotResource", statement)
            actions = as_list(statement["Action"])
            resources = as_list(statement["Resource"])
            self.assertEqual(len(resources), 1, "each statement on its own resource")
            for value in actions:
                self.assertNotIn("*", value, f"wildcard in the task role: {value}")
            for value in resources:
                if value != METRICS_LOG_STREAMS:  # the agent's log streams, in its one group
                    self.assertNotIn("*", str(value), f"wildcard in the task role: {value}")
            grants.setdefault(repr(resources[0]), set()).update(actions)
        self.assertEqual(
            grants,
            {
                repr({"Fn::GetAtt": ["Stream", "Arn"]}): KINESIS_PRODUCER_ACTIONS,
                repr({"Fn::GetAtt": ["CheckpointTable", "Arn"]}): CHECKPOINT_ACTIONS,
                # The CloudWatch agent sidecar shares the task role: its one log group.
                repr(METRICS_LOG_STREAMS): {"logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"},
            },
        )

    def test_execution_role_may_only_pull_the_image_and_write_logs(self):
        role = self.r["ExecutionRole"]
        ev = Evaluator(self.t)
        allowed = {
            "ecr:GetAuthorizationToken",
            "ecr:BatchCheckLayerAvailability",
            "ecr:BatchGetImage",
            "ecr:GetDownloadUrlForLayer",
            "logs:CreateLogStream",
            "logs:PutLogEvents",
        }
        seen = set()
        for statement in statements(role, ev):
            self.assertEqual(statement["Effect"], "Allow")
            actions = set(as_list(statement["Action"]))
            self.assertLessEqual(actions, allowed)
            seen |= actions
            if as_list(statement["Resource"]) == ["*"]:
                # The one action that has no resource to scope it to.
                self.assertEqual(actions, {"ecr:GetAuthorizationToken"})
        self.assertEqual(seen, allowed)
        logs = [s for s in statements(role, ev) if "logs:PutLogEvents" in as_list(s["Action"])]
        self.assertIn("${LogGroup}", logs[0]["Resource"]["Fn::Sub"])

    def test_firehose_role_may_only_read_its_stream_and_write_its_bucket(self):
        role = self.r["FirehoseRole"]
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        self.assertEqual(trust["Principal"], {"Service": "firehose.amazonaws.com"})
        by_service = {}
        for statement in statements(role, Evaluator(self.t)):
            self.assertEqual(statement["Effect"], "Allow")
            for resource in as_list(statement["Resource"]):
                self.assertNotEqual(resource, "*")
            for action in as_list(statement["Action"]):
                self.assertNotIn("*", action)
                service = action.split(":")[0]
                by_service.setdefault(service, set()).add(action)
                if service == "kinesis":
                    self.assertEqual(statement["Resource"], {"Fn::GetAtt": ["Stream", "Arn"]})
        self.assertEqual(
            by_service["kinesis"],
            {"kinesis:DescribeStream", "kinesis:GetShardIterator", "kinesis:GetRecords", "kinesis:ListShards"},
        )
        self.assertNotIn("s3:DeleteObject", by_service["s3"])
        self.assertEqual(by_service["logs"], {"logs:PutLogEvents"})
        self.assertEqual(set(by_service), {"kinesis", "s3", "logs"})

    def test_no_credentials_in_the_template(self):
        for text in walk_strings(self.t):
            for name in CREDENTIAL_NAMES:
                self.assertNotIn(name, text)

    def test_bucket_expires_the_data_and_error_prefixes(self):
        rules = {r["Id"]: r for r in self.r["Bucket"]["Properties"]["LifecycleConfiguration"]["Rules"]}
        ev = Evaluator(self.t)
        self.assertEqual(ev.string(rules["expire-data"]["Prefix"]), "sse-data/")
        self.assertEqual(ev.string(rules["expire-errors"]["Prefix"]), "sse-error/")
        for rule in (rules["expire-data"], rules["expire-errors"]):
            self.assertEqual(rule["Status"], "Enabled")
            self.assertEqual(rule["ExpirationInDays"], {"Ref": "S3ExpirationDays"})
        ev = Evaluator(self.t, {"S3StorageBucketPrefix": "raw/", "S3StorageBucketErrorPrefix": "bad/!{firehose:error-output-type}/"})
        self.assertEqual(ev.string(rules["expire-data"]["Prefix"]), "raw/")
        self.assertEqual(ev.string(rules["expire-errors"]["Prefix"]), "bad/")

    def test_execution_role_pulls_from_the_images_repository(self):
        (pull,) = [s for s in statements(self.r["ExecutionRole"], Evaluator(self.t)) if s.get("Sid") == "PullTheImage"]
        for image, repository in [
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com/sse-ingest:0.1.0", "sse-ingest"),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com/team/sse-ingest:abc123", "team/sse-ingest"),
            ("123456789012.dkr.ecr.us-east-1.amazonaws.com/sse-ingest@sha256:0123abcd", "sse-ingest"),
            ("ghcr.io/example/sse-ingest:1", "-"),
        ]:
            arn = Evaluator(self.t, {"ContainerImage": image}).string(pull["Resource"])
            self.assertEqual(arn, f"arn:aws:ecr:us-east-1:123456789012:repository/{repository}", image)

    def test_execution_role_reads_the_one_secret(self):
        def secret_statements(arn):
            ev = Evaluator(self.t, {"SecretArn": arn, "SecretVariable": "WIKI_TOKEN" if arn else ""})
            found = [s for s in statements(self.r["ExecutionRole"], ev) if s.get("Sid") == "ReadTheSecret"]
            return [(s["Action"], ev.string(s["Resource"])) for s in found]

        self.assertEqual(secret_statements(""), [])
        base = "arn:aws:secretsmanager:us-east-1:123456789012:secret:wiki-AbCdEf"
        self.assertEqual(secret_statements(base), [("secretsmanager:GetSecretValue", base)])
        # A JSON key (and version fields) after the ARN are ECS's, not the secret's ARN.
        self.assertEqual(secret_statements(base + ":token::"), [("secretsmanager:GetSecretValue", base)])
        ssm = "arn:aws:ssm:us-east-1:123456789012:parameter/sse-ingest/wiki-token"
        self.assertEqual(secret_statements(ssm), [("ssm:GetParameters", ssm)])
        # Both or neither (a CloudFormation rule refuses one without the other).
        (assertion,) = self.t["Rules"]["SecretVariableAndArnTogether"]["Assertions"]
        for variable, arn, ok in [("", "", True), ("X", base, True), ("X", "", False), ("", base, False)]:
            ev = Evaluator(self.t, {"SecretVariable": variable, "SecretArn": arn})
            self.assertEqual(ev.boolean(assertion["Assert"]), ok, (variable, arn))

    def test_firehose_may_use_an_existing_buckets_key(self):
        def kms(parameters):
            ev = Evaluator(self.t, parameters)
            return [s for s in statements(self.r["FirehoseRole"], ev) if s.get("Sid") == "EncryptWithTheBucketKey"]

        self.assertEqual(kms({}), [])
        key = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        (statement,) = kms({"S3StorageBucket": "mine", "S3StorageBucketKmsKeyArn": key})
        self.assertEqual(set(statement["Action"]), {"kms:GenerateDataKey", "kms:Decrypt"})
        self.assertEqual(statement["Resource"], {"Ref": "S3StorageBucketKmsKeyArn"})
        ev = Evaluator(self.t, {"S3StorageBucket": "mine"})
        condition = statement["Condition"]
        self.assertEqual(ev.string(condition["StringEquals"]["kms:ViaService"]), "s3.us-east-1.amazonaws.com")
        self.assertEqual(ev.string(condition["StringLike"]["kms:EncryptionContext:aws:s3:arn"]), "arn:aws:s3:::mine/*")

    def test_container_insights_on(self):
        self.assertEqual(
            self.r["Cluster"]["Properties"]["ClusterSettings"], [{"Name": "containerInsights", "Value": "enabled"}]
        )


class Alarms(unittest.TestCase):
    """The stack's alarms: what each watches, and that each notifies the topic parameter."""

    @classmethod
    def setUpClass(cls):
        cls.t = load_template(MAIN)
        cls.alarms = resources_of_type(cls.t, "AWS::CloudWatch::Alarm")

    def alarm(self, name):
        return self.alarms[name]["Properties"]

    def test_the_alarms(self):
        self.assertEqual(
            set(self.alarms),
            {
                "IngestionStoppedAlarm",
                "KinesisThrottlingAlarm",
                "FirehoseDataFreshnessAlarm",
                "DynamoDbThrottlesAlarm",
                "FencedAlarm",
                "TasksBelowShardsAlarm",
                "PipelinesNotConnectedAlarm",
            },
        )

    def test_every_alarm_notifies_the_topic_when_set(self):
        topic = "arn:aws:sns:us-east-1:123456789012:pager"
        for name, alarm in self.alarms.items():
            props = alarm["Properties"]
            for key in ("AlarmActions", "OKActions"):
                self.assertEqual(props[key], {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}, name)
            self.assertEqual(Evaluator(self.t, {"AlarmTopicArn": topic}).resolve(props["AlarmActions"]), [{"Ref": "AlarmTopicArn"}])
            self.assertNotIn("AlarmActions", Evaluator(self.t).resolve(props))

    def assert_metric(self, props, namespace, metric, dimensions):
        self.assertEqual((props["Namespace"], props["MetricName"]), (namespace, metric))
        self.assertEqual(props.get("Dimensions", []), dimensions)

    def test_ingestion_stopped(self):
        props = self.alarm("IngestionStoppedAlarm")
        self.assert_metric(props, "AWS/Kinesis", "IncomingRecords", [{"Name": "StreamName", "Value": {"Ref": "Stream"}}])
        self.assertEqual((props["Statistic"], props["Period"], props["Threshold"]), ("Sum", 60, 0))
        self.assertEqual(props["ComparisonOperator"], "LessThanOrEqualToThreshold")
        self.assertEqual(props["EvaluationPeriods"], {"Ref": "IngestionStoppedMinutes"})
        self.assertEqual(props["TreatMissingData"], "breaching")

    def test_kinesis_throttling(self):
        props = self.alarm("KinesisThrottlingAlarm")
        self.assert_metric(
            props, "AWS/Kinesis", "WriteProvisionedThroughputExceeded", [{"Name": "StreamName", "Value": {"Ref": "Stream"}}]
        )
        self.assertEqual((props["ComparisonOperator"], props["Threshold"]), ("GreaterThanThreshold", 0))

    def test_firehose_freshness(self):
        props = self.alarm("FirehoseDataFreshnessAlarm")
        self.assert_metric(
            props,
            "AWS/Firehose",
            "DeliveryToS3.DataFreshness",
            [{"Name": "DeliveryStreamName", "Value": {"Ref": "DeliveryStream"}}],
        )
        self.assertEqual(props["Threshold"], {"Ref": "DataFreshnessAlarmSeconds"})
        self.assertGreater(
            int(self.t["Parameters"]["DataFreshnessAlarmSeconds"]["Default"]),
            int(self.t["Parameters"]["FirehoseBufferSeconds"]["Default"]),
        )

    def test_dynamodb_throttles(self):
        props = self.alarm("DynamoDbThrottlesAlarm")
        metrics = {m["Id"]: m for m in props["Metrics"]}
        for name, metric in [("writes", "WriteThrottleEvents"), ("reads", "ReadThrottleEvents")]:
            stat = metrics[name]["MetricStat"]["Metric"]
            self.assertEqual((stat["Namespace"], stat["MetricName"]), ("AWS/DynamoDB", metric))
            self.assertEqual(stat["Dimensions"], [{"Name": "TableName", "Value": {"Ref": "CheckpointTable"}}])
        self.assertEqual(metrics["throttles"]["Expression"], "FILL(writes, 0) + FILL(reads, 0)")
        self.assertEqual([m["Id"] for m in props["Metrics"] if m["ReturnData"]], ["throttles"])

    def test_fencing_counts_the_takeover_message_of_the_code(self):
        (name, metric_filter), = resources_of_type(self.t, "AWS::Logs::MetricFilter").items()
        props = metric_filter["Properties"]
        self.assertEqual(props["LogGroupName"], {"Ref": "LogGroup"})
        self.assertEqual(props["FilterPattern"], '"another owner took pipeline"')
        # The phrase is what the code logs when a pipeline is fenced.
        source = (ROOT / "host/src/pipeline/checkpoint/mod.rs").read_text(encoding="utf-8")
        self.assertIn('"another owner took pipeline `{pipeline}`', source)
        (transformation,) = props["MetricTransformations"]
        alarm = self.alarm("FencedAlarm")
        self.assertEqual(alarm["Namespace"], transformation["MetricNamespace"])
        self.assertEqual(alarm["MetricName"], transformation["MetricName"])
        self.assertEqual((alarm["Statistic"], alarm["Threshold"]), ("Sum", 1))
        self.assertEqual(alarm["ComparisonOperator"], "GreaterThanOrEqualToThreshold")

    def test_tasks_below_shards(self):
        props = self.alarm("TasksBelowShardsAlarm")
        self.assert_metric(props, "ECS/ContainerInsights", "TaskCount", [{"Name": "ClusterName", "Value": {"Ref": "Cluster"}}])
        self.assertEqual((props["Threshold"], props["ComparisonOperator"]), ({"Ref": "ShardCount"}, "LessThanThreshold"))
        self.assertEqual(props["TreatMissingData"], "breaching")

    def test_pipelines_not_connected(self):
        props = self.alarm("PipelinesNotConnectedAlarm")
        self.assert_metric(
            props, {"Ref": "MetricsNamespace"}, "sse_ingest_connected", [{"Name": "Deployment", "Value": {"Ref": "AWS::StackName"}}]
        )
        self.assertEqual((props["Statistic"], props["Threshold"]), ("Minimum", 1))
        self.assertEqual(props["ComparisonOperator"], "LessThanThreshold")
        # The gauge the code exports under that name (prefix sse_ingest, name connected).
        metrics = (ROOT / "host/src/core/metrics.rs").read_text(encoding="utf-8")
        self.assertIn('Registry::with_prefix("sse_ingest")', metrics)
        self.assertIn('connected: Gauge = "connected"', metrics)


class ShardsTemplate(unittest.TestCase):
    """sse-ingest-shards.yaml: generated by deploy.sh for a shard count."""

    def test_the_repository_copy_is_the_one_for_one_shard(self):
        self.assertEqual((AWS / SHARDS).read_text(encoding="utf-8"), shards_template(1))

    def test_one_shard_stack_per_index_for_any_count(self):
        shard_params = set(load_template(SHARD)["Parameters"])
        for count in (1, 3, 12):
            template = yaml.load(shards_template(count), Loader=CfnLoader)
            self.assertEqual(template["Parameters"]["ShardCount"]["AllowedValues"], [count])
            stacks = template["Resources"]
            self.assertEqual(list(stacks), [f"Shard{i}" for i in range(count)])
            for i, (name, stack) in enumerate(stacks.items()):
                self.assertEqual(stack["Type"], "AWS::CloudFormation::Stack")
                self.assertEqual(stack["Properties"]["TemplateURL"], SHARD)
                params = stack["Properties"]["Parameters"]
                self.assertEqual(set(params), shard_params)
                self.assertEqual(params["ShardIndex"], str(i))
                for key, value in params.items():
                    if key != "ShardIndex":
                        self.assertEqual(value, {"Ref": key})
            self.assertEqual(set(template["Parameters"]), shard_params - {"ShardIndex"})

    def test_refuses_a_count_that_is_not_positive(self):
        for bad in ("0", "-1", "two", ""):
            result = subprocess.run(["bash", str(DEPLOY_SH), "shards-template", bad], capture_output=True, text=True)
            self.assertEqual(result.returncode, 2, bad)
            self.assertEqual(result.stdout, "")


class CfnLoader(yaml.SafeLoader):
    """PyYAML with the one short form the generated template uses (!Ref)."""


CfnLoader.add_constructor("!Ref", lambda loader, node: {"Ref": loader.construct_scalar(node)})


class Shard(unittest.TestCase):
    """sse-ingest-shard.yaml: one Fargate task definition and its service."""

    @classmethod
    def setUpClass(cls):
        cls.t = load_template(SHARD)
        (cls.service,) = resources_of_type(cls.t, "AWS::ECS::Service").values()
        (cls.task,) = resources_of_type(cls.t, "AWS::ECS::TaskDefinition").values()
        cls.container = container(cls.task, "sse-ingest")
        cls.agent = container(cls.task, "cloudwatch-agent")
        cls.env = {e["Name"]: e["Value"] for e in cls.container["Environment"]}

    def test_one_service_one_task_never_two_owners(self):
        self.assertEqual(len(self.t["Resources"]), 2)
        props = self.service["Properties"]
        self.assertEqual(props["DesiredCount"], 1)
        self.assertEqual(props["LaunchType"], "FARGATE")
        deployment = props["DeploymentConfiguration"]
        self.assertEqual(deployment["MinimumHealthyPercent"], 0)
        self.assertEqual(deployment["MaximumPercent"], 100)
        self.assertEqual(props["TaskDefinition"], {"Ref": "TaskDefinition"})
        network = props["NetworkConfiguration"]["AwsvpcConfiguration"]
        self.assertEqual(network["Subnets"], {"Ref": "Subnets"})
        self.assertEqual(network["SecurityGroups"], {"Ref": "SecurityGroups"})

    def test_task_definition_is_fargate_with_its_roles(self):
        props = self.task["Properties"]
        self.assertEqual(props["RequiresCompatibilities"], ["FARGATE"])
        self.assertEqual(props["NetworkMode"], "awsvpc")
        self.assertEqual(props["TaskRoleArn"], {"Ref": "TaskRoleArn"})
        self.assertEqual(props["ExecutionRoleArn"], {"Ref": "ExecutionRoleArn"})

    def test_read_only_root_with_a_state_volume(self):
        self.assertIs(self.container["ReadonlyRootFilesystem"], True)
        volumes = {v["Name"] for v in self.task["Properties"]["Volumes"]}
        (mount,) = self.container["MountPoints"]
        self.assertIn(mount["SourceVolume"], volumes)
        self.assertEqual(mount["ContainerPath"], STATE_DIR)
        self.assertFalse(mount.get("ReadOnly", False))
        self.assertEqual(self.container["User"], "65532:65532")
        self.assertEqual(self.container["LinuxParameters"]["Capabilities"]["Drop"], ["ALL"])

    def test_health_check(self):
        self.assertEqual(self.container["HealthCheck"]["Command"], HEALTH_CHECK)

    def test_command_reads_the_config_from_the_environment_and_names_the_shard(self):
        command = self.container["Command"]
        self.assertEqual(command[:4], ["run", "--config", "env:SSE_INGEST_CONFIG", "--shard"])
        self.assertEqual(command[4], {"Fn::Sub": "${ShardIndex}/${ShardCount}"})
        self.assertEqual(len(command), 5)
        for index, count in [(0, 1), (2, 3), (7, 8), (11, 12)]:
            ev = Evaluator(self.t, {"ShardIndex": index, "ShardCount": count})
            rendered = [ev.string(part) for part in command]
            self.assertEqual(rendered, ["run", "--config", "env:SSE_INGEST_CONFIG", "--shard", f"{index}/{count}"])

    def test_the_shard_is_only_in_the_command(self):
        # One place for the shard: the environment names no shard variable (the CLI
        # also reads SSE_INGEST_SHARD*, and two sources could disagree).
        self.assertIn("SSE_INGEST_CONFIG", self.env)
        for name in self.env:
            self.assertFalse(name.startswith("SSE_INGEST_SHARD"), name)

    def test_secret_reaches_the_container_only_when_set(self):
        self.assertEqual(
            self.container["Secrets"],
            {"Fn::If": ["HasSecret", [{"Name": {"Ref": "SecretVariable"}, "ValueFrom": {"Ref": "SecretArn"}}], {"Ref": "AWS::NoValue"}]},
        )
        self.assertNotIn("Secrets", Evaluator(self.t).resolve(self.container))

    def test_cloudwatch_agent_scrapes_the_admin_api_on_loopback(self):
        self.assertIs(self.agent["Essential"], False)
        self.assertEqual(self.agent["Image"], {"Ref": "CloudWatchAgentImage"})
        env = {e["Name"]: e["Value"] for e in self.agent["Environment"]}
        ev = Evaluator(
            self.t,
            {"ShardIndex": 2, "ShardCount": 3, "MetricsLogGroupName": "metrics-group", "MetricsNamespace": "SseIngest",
             "DeploymentName": "prod", "StreamName": "stream", "TableName": "table"},
        )
        agent = json.loads(ev.string(env["CW_CONFIG_CONTENT"]))
        prometheus = agent["logs"]["metrics_collected"]["prometheus"]
        self.assertEqual(prometheus["log_group_name"], "metrics-group")
        self.assertEqual(prometheus["prometheus_config_path"], "env:PROMETHEUS_CONFIG_CONTENT")
        emf = prometheus["emf_processor"]
        self.assertEqual(emf["metric_namespace"], "SseIngest")
        (declaration,) = emf["metric_declaration"]
        self.assertEqual(declaration["dimensions"], [["Deployment"]])
        self.assertIn("^sse_ingest_connected$", declaration["metric_selectors"])
        # Every selected metric is one the code exports (counters with OpenMetrics' _total).
        code = (ROOT / "host/src/core/metrics.rs").read_text(encoding="utf-8")
        for selector in declaration["metric_selectors"]:
            name = re.fullmatch(r"\^sse_ingest_(\w+?)(?:_total)?\$", selector).group(1)
            self.assertTrue(re.search(rf'(= "{name}"|^\s*"{name}",)', code, re.M), f"{selector} is not in the code")
        scrape = yaml.safe_load(ev.string(env["PROMETHEUS_CONFIG_CONTENT"]))
        (job,) = scrape["scrape_configs"]
        self.assertEqual(job["job_name"], "sse-ingest")
        self.assertRegex("sse-ingest", declaration["label_matcher"])
        self.assertEqual(job["metrics_path"], "/metrics")
        (targets,) = job["static_configs"]
        self.assertEqual(targets["labels"], {"Deployment": "prod", "Shard": "2"})
        # The address sse-ingest's admin API listens on in the task (the config header).
        header = tomllib.loads(ev.string(self.env["SSE_INGEST_CONFIG"]["Fn::Join"][1][0]))
        self.assertEqual(targets["targets"], [header["admin"]["address"]])
        self.assertNotIn("token", header["admin"])

    def test_user_text_is_joined_never_substituted(self):
        (delimiter, parts), = self.env["SSE_INGEST_CONFIG"].items()
        self.assertEqual(delimiter, "Fn::Join")
        self.assertIn({"Ref": "PipelinesConfig"}, parts[1])
        for part in parts[1]:
            if isinstance(part, dict) and "Fn::Sub" in part:
                self.assertNotIn("PipelinesConfig", part["Fn::Sub"])

    def test_logs_go_to_the_log_group(self):
        logging = self.container["LogConfiguration"]
        self.assertEqual(logging["LogDriver"], "awslogs")
        self.assertEqual(logging["Options"]["awslogs-group"], {"Ref": "LogGroupName"})

    def test_no_credentials_in_the_template(self):
        for text in walk_strings(self.t):
            for name in CREDENTIAL_NAMES:
                self.assertNotIn(name, text)


class ShardConfig(unittest.TestCase):
    """The TOML the shard template hands the process, rendered as CloudFormation would."""

    MULTILINE = (
        'defaults.format = "envelope"\n'
        "\n"
        "[[pipeline]]\n"
        'name = "recentchange"\n'
        'url = "https://stream.wikimedia.org/v2/stream/recentchange"\n'
        'header = ["Authorization: Bearer ${WIKI_TOKEN}"]\n'
        'filter = "wikimedia"\n'
        "\n"
        "[[pipeline]]\n"
        'name = "page-create"\n'
        'url = "https://stream.wikimedia.org/v2/stream/page-create"\n'
    )

    @classmethod
    def setUpClass(cls):
        cls.main = load_template(MAIN)
        cls.shard = load_template(SHARD)
        (task,) = resources_of_type(cls.shard, "AWS::ECS::TaskDefinition").values()
        cls.config = next(
            e["Value"] for e in container(task, "sse-ingest")["Environment"] if e["Name"] == "SSE_INGEST_CONFIG"
        )

    def render(self, pipelines_config):
        ev = Evaluator(
            self.shard,
            {
                "ShardIndex": 0,
                "ShardCount": 2,
                "StreamName": "sse-ingest-Stream-abc",
                "TableName": "sse-ingest-CheckpointTable-abc",
                "PipelinesConfig": pipelines_config,
            },
        )
        return ev.string(self.config)

    def test_default_pipelines_config(self):
        default = self.main["Parameters"]["PipelinesConfig"]["Default"]
        self.assertNotIn("\n", default, "the console's text field holds one line")
        text = self.render(default)
        config = tomllib.loads(text)
        self.assertEqual(config["state_dir"], STATE_DIR)
        self.assertEqual(config["region"], "us-east-1")
        self.assertEqual(config["admin"], {"address": "127.0.0.1:9090"})
        self.assertEqual(config["defaults"]["sink"], "kinesis:sse-ingest-Stream-abc")
        self.assertEqual(config["defaults"]["checkpoint_store"], "dynamodb:sse-ingest-CheckpointTable-abc")
        self.assertEqual([p["name"] for p in config["pipeline"]], ["recentchange"])
        assert_check_passes(self, text, "the ECS config with the default PipelinesConfig")

    def test_multiline_pipelines_config_keeps_its_variables(self):
        text = self.render(self.MULTILINE)
        config = tomllib.loads(text)
        self.assertEqual(config["defaults"]["format"], "envelope")
        self.assertEqual(config["defaults"]["sink"], "kinesis:sse-ingest-Stream-abc")
        self.assertEqual([p["name"] for p in config["pipeline"]], ["recentchange", "page-create"])
        # ${WIKI_TOKEN} reaches sse-ingest as written, for it to expand at run time.
        self.assertEqual(config["pipeline"][0]["header"], ["Authorization: Bearer ${WIKI_TOKEN}"])
        assert_check_passes(
            self, text, "the ECS config with [[pipeline]] tables", env={"WIKI_TOKEN": "test-token-not-a-secret"}
        )


class Vpc(unittest.TestCase):
    """sse-ingest-vpc.yaml: a VPC with private subnets in two zones and NAT, nesting MAIN."""

    @classmethod
    def setUpClass(cls):
        cls.t = load_template(VPC)
        cls.r = cls.t["Resources"]
        cls.main = load_template(MAIN)

    def test_private_and_public_subnets_in_two_zones(self):
        subnets = resources_of_type(self.t, "AWS::EC2::Subnet")
        self.assertEqual(set(subnets), {"PublicSubnetA", "PublicSubnetB", "PrivateSubnetA", "PrivateSubnetB"})
        for kind in ("Public", "Private"):
            zones = [subnets[f"{kind}Subnet{z}"]["Properties"]["AvailabilityZone"] for z in "AB"]
            self.assertEqual(zones, [{"Fn::Select": [i, {"Fn::GetAZs": ""}]} for i in (0, 1)])
        cidrs = [s["Properties"]["CidrBlock"]["Fn::Select"][0] for s in subnets.values()]
        self.assertEqual(sorted(cidrs), [0, 1, 2, 3], "four distinct address ranges")
        for subnet in subnets.values():
            self.assertNotIn("MapPublicIpOnLaunch", subnet["Properties"])

    def test_private_subnets_go_out_through_nat_in_a_public_subnet(self):
        nat_a = self.r["NatGatewayA"]["Properties"]
        self.assertEqual(nat_a["SubnetId"], {"Ref": "PublicSubnetA"})
        self.assertEqual(self.r["NatGatewayB"]["Properties"]["SubnetId"], {"Ref": "PublicSubnetB"})
        self.assertEqual(self.r["PrivateDefaultRouteA"]["Properties"]["NatGatewayId"], {"Ref": "NatGatewayA"})
        self.assertEqual(
            self.r["PrivateDefaultRouteB"]["Properties"]["NatGatewayId"],
            {"Fn::If": ["SecondNat", {"Ref": "NatGatewayB"}, {"Ref": "NatGatewayA"}]},
        )
        self.assertEqual(self.r["PublicDefaultRoute"]["Properties"]["GatewayId"], {"Ref": "InternetGateway"})
        associations = {
            v["Properties"]["SubnetId"]["Ref"]: v["Properties"]["RouteTableId"]["Ref"]
            for v in resources_of_type(self.t, "AWS::EC2::SubnetRouteTableAssociation").values()
        }
        self.assertEqual(
            associations,
            {
                "PublicSubnetA": "PublicRouteTable",
                "PublicSubnetB": "PublicRouteTable",
                "PrivateSubnetA": "PrivateRouteTableA",
                "PrivateSubnetB": "PrivateRouteTableB",
            },
        )

    def test_task_security_group_has_no_ingress(self):
        (group,) = resources_of_type(self.t, "AWS::EC2::SecurityGroup").values()
        self.assertNotIn("SecurityGroupIngress", group["Properties"])
        self.assertEqual(resources_of_type(self.t, "AWS::EC2::SecurityGroupIngress"), {})
        ports = {(e["FromPort"], e["ToPort"]) for e in group["Properties"]["SecurityGroupEgress"]}
        self.assertEqual(ports, {(443, 443)})

    def test_nests_the_main_stack_in_the_private_subnets(self):
        app = self.r["App"]
        self.assertEqual(app["Type"], "AWS::CloudFormation::Stack")
        self.assertEqual(app["Properties"]["TemplateURL"], MAIN)
        params = app["Properties"]["Parameters"]
        self.assertEqual(params["Subnets"], {"Fn::Join": [",", [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]]})
        self.assertEqual(params["SecurityGroups"], {"Ref": "TaskSecurityGroup"})
        self.assertEqual(params["AssignPublicIp"], "DISABLED")
        self.assertEqual(set(params), set(self.main["Parameters"]))

    def test_passed_parameters_are_declared_exactly_as_in_the_main_stack(self):
        params = self.r["App"]["Properties"]["Parameters"]
        for name, spec in self.main["Parameters"].items():
            if params[name] == {"Ref": name}:
                self.assertEqual(self.t["Parameters"][name], spec, name)

    def test_no_credentials_in_the_template(self):
        for text in walk_strings(self.t):
            for name in CREDENTIAL_NAMES:
                self.assertNotIn(name, text)


if __name__ == "__main__":
    unittest.main()
