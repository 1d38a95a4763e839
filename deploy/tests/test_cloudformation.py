"""The CloudFormation templates of deploy/aws, parsed (cfnlint.decode) and checked
resource by resource: what issue #13 asks of each, and least privilege."""

import json
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
KINESIS_PRODUCER_ACTIONS = {"kinesis:PutRecords", "kinesis:DescribeStreamSummary"}
CHECKPOINT_ACTIONS = {"dynamodb:GetItem", "dynamodb:PutItem"}
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
