"""The Kubernetes manifests of deploy/kubernetes, parsed (PyYAML) and checked: the
StatefulSet's sharding, probes, hardening and resources, the config it mounts, the
Service and ServiceAccount it names, and that no credentials are in any of them."""

import re
import tomllib
import unittest
from pathlib import PurePosixPath

import yaml

from support import CREDENTIAL_NAMES, KUBERNETES, STATE_DIR, assert_check_passes, load_manifests, walk_strings

MONITORING = KUBERNETES / "monitoring"
METRICS_SOURCE = KUBERNETES.parent.parent / "host" / "src" / "core" / "metrics.rs"

RUNTIME_UID = 65532


def parse_quantity(value):
    """A Kubernetes quantity as a float of base units (cores or bytes)."""
    value = str(value)
    suffixes = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 1e3, "M": 1e6, "G": 1e9}
    for suffix in sorted(suffixes, key=len, reverse=True):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * suffixes[suffix]
    return float(value)


class Manifests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.docs = load_manifests()
        cls.by_kind = {}
        for _, doc in cls.docs:
            cls.by_kind.setdefault(doc["kind"], []).append(doc)
        (cls.sts,) = cls.by_kind["StatefulSet"]
        (cls.configmap,) = cls.by_kind["ConfigMap"]
        (cls.service,) = cls.by_kind["Service"]
        (cls.account,) = cls.by_kind["ServiceAccount"]
        (cls.pdb,) = cls.by_kind["PodDisruptionBudget"]
        (cls.network_policy,) = cls.by_kind["NetworkPolicy"]
        cls.pod = cls.sts["spec"]["template"]["spec"]
        (cls.container,) = cls.pod["containers"]
        cls.args = cls.container["args"]
        # The config file the container reads, from the ConfigMap it mounts.
        cls.config_path = PurePosixPath(cls.args[cls.args.index("--config") + 1])
        cls.config_text = cls.configmap["data"][cls.config_path.name]
        cls.config = tomllib.loads(cls.config_text)

    def test_only_the_expected_kinds(self):
        self.assertEqual(
            set(self.by_kind),
            {"StatefulSet", "ConfigMap", "Service", "ServiceAccount", "PodDisruptionBudget", "NetworkPolicy"},
        )
        self.assertNotIn("Secret", self.by_kind, "the admin token's Secret is made by the user, never committed")

    def test_statefulset_runs_one_shard_per_replica(self):
        self.assertEqual(
            self.args,
            ["run", "--config", "/etc/sse-ingest/config.toml", "--shard-from-hostname", "--shard-count", self.args[-1]],
        )
        self.assertEqual(int(self.args[-1]), self.sts["spec"]["replicas"], "--shard-count must equal replicas")
        self.assertEqual(self.sts["spec"]["podManagementPolicy"], "Parallel")

    def test_statefulset_is_governed_by_the_service(self):
        spec = self.sts["spec"]
        self.assertEqual(spec["serviceName"], self.service["metadata"]["name"])
        labels = spec["template"]["metadata"]["labels"]
        for key, value in spec["selector"]["matchLabels"].items():
            self.assertEqual(labels[key], value)
        for key, value in self.service["spec"]["selector"].items():
            self.assertEqual(labels[key], value)

    def test_service_exposes_the_admin_port(self):
        (port,) = self.service["spec"]["ports"]
        self.assertEqual(port["port"], 9090)
        self.assertEqual(self.service["spec"]["clusterIP"], "None")
        (container_port,) = self.container["ports"]
        self.assertEqual(container_port["containerPort"], 9090)
        self.assertEqual(port["targetPort"], container_port["name"])
        self.assertEqual(self.config["admin"]["address"], "0.0.0.0:9090")

    def test_probes(self):
        liveness = self.container["livenessProbe"]["httpGet"]
        readiness = self.container["readinessProbe"]["httpGet"]
        self.assertEqual(liveness["path"], "/health")
        self.assertEqual(readiness["path"], "/ready")
        for probe in (liveness, readiness):
            self.assertIn(probe["port"], ("admin", 9090))

    def test_security_context(self):
        pod = self.pod["securityContext"]
        self.assertIs(pod["runAsNonRoot"], True)
        self.assertEqual(pod["runAsUser"], RUNTIME_UID)
        self.assertEqual(pod["runAsGroup"], RUNTIME_UID)
        self.assertEqual(pod["seccompProfile"], {"type": "RuntimeDefault"})
        container = self.container["securityContext"]
        self.assertIs(container["runAsNonRoot"], True)
        self.assertEqual(container["runAsUser"], RUNTIME_UID)
        self.assertIs(container["readOnlyRootFilesystem"], True)
        self.assertIs(container["allowPrivilegeEscalation"], False)
        self.assertEqual(container["capabilities"], {"drop": ["ALL"]})
        self.assertEqual(container["seccompProfile"], {"type": "RuntimeDefault"})
        self.assertNotIn("privileged", container)

    def test_resources_requested_and_limited(self):
        resources = self.container["resources"]
        for kind in ("cpu", "memory"):
            request = parse_quantity(resources["requests"][kind])
            limit = parse_quantity(resources["limits"][kind])
            self.assertGreater(request, 0)
            self.assertLessEqual(request, limit)
        # One pipeline at full speed peaks at 60-90 MiB (README "Performance and scaling").
        self.assertGreaterEqual(parse_quantity(resources["limits"]["memory"]), 90 * 2**20)

    def test_volumes(self):
        mounts = {m["mountPath"]: m for m in self.container["volumeMounts"]}
        volumes = {v["name"]: v for v in self.pod["volumes"]}
        state = volumes[mounts[STATE_DIR]["name"]]
        self.assertIn("emptyDir", state)
        self.assertFalse(mounts[STATE_DIR].get("readOnly", False))
        config = mounts[str(self.config_path.parent)]
        self.assertIs(config["readOnly"], True)
        self.assertEqual(volumes[config["name"]]["configMap"]["name"], self.configmap["metadata"]["name"])
        self.assertEqual(self.config["state_dir"], STATE_DIR)

    def test_admin_token_comes_from_a_secret(self):
        env = {e["name"]: e for e in self.container["env"]}
        token = env["SSE_INGEST_ADMIN_TOKEN"]
        self.assertNotIn("value", token)
        ref = token["valueFrom"]["secretKeyRef"]
        self.assertIs(ref["optional"], False)
        self.assertTrue(ref["name"] and ref["key"])
        self.assertEqual(self.config["admin"]["token"], "${SSE_INGEST_ADMIN_TOKEN}")

    def test_identity_from_the_service_account(self):
        self.assertEqual(self.pod["serviceAccountName"], self.account["metadata"]["name"])
        role = self.account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
        self.assertTrue(role.startswith("arn:aws:iam::"))

    def test_no_credentials_anywhere(self):
        for name, doc in self.docs:
            for text in walk_strings(doc):
                for credential in CREDENTIAL_NAMES:
                    self.assertNotIn(credential, text, name)
        for e in self.container["env"]:
            self.assertNotIn("value", e, f"{e['name']}: plain values belong in the ConfigMap, secrets in a Secret")

    def pod_labels(self):
        return self.sts["spec"]["template"]["metadata"]["labels"]

    def test_disruption_budget_takes_one_shard_at_a_time(self):
        spec = self.pdb["spec"]
        self.assertEqual(spec["maxUnavailable"], 1)
        self.assertNotIn("minAvailable", spec)
        self.assertEqual(spec["selector"], self.sts["spec"]["selector"])

    def test_shards_spread_over_zones_and_nodes(self):
        constraints = {c["topologyKey"]: c for c in self.pod["topologySpreadConstraints"]}
        self.assertEqual(set(constraints), {"topology.kubernetes.io/zone", "kubernetes.io/hostname"})
        for constraint in constraints.values():
            self.assertEqual(constraint["maxSkew"], 1)
            self.assertEqual(constraint["labelSelector"]["matchLabels"], self.sts["spec"]["selector"]["matchLabels"])
            self.assertEqual(constraint["whenUnsatisfiable"], "ScheduleAnyway")

    def test_network_policy_admits_only_the_monitoring_namespace_to_the_admin_port(self):
        spec = self.network_policy["spec"]
        self.assertEqual(spec["podSelector"]["matchLabels"], self.sts["spec"]["selector"]["matchLabels"])
        self.assertEqual(spec["policyTypes"], ["Ingress"])
        (rule,) = spec["ingress"]
        (port,) = rule["ports"]
        (container_port,) = self.container["ports"]
        self.assertEqual((port["protocol"], port["port"]), ("TCP", container_port["containerPort"]))
        self.assertEqual(rule["from"], [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}])

    def test_no_kubernetes_api_token_in_the_pod(self):
        self.assertIs(self.pod["automountServiceAccountToken"], False)
        self.assertIs(self.account["automountServiceAccountToken"], False)

    def test_scrape_annotations_name_the_admin_port(self):
        annotations = self.sts["spec"]["template"]["metadata"]["annotations"]
        (container_port,) = self.container["ports"]
        self.assertEqual(
            annotations,
            {
                "prometheus.io/scrape": "true",
                "prometheus.io/port": str(container_port["containerPort"]),
                "prometheus.io/path": "/metrics",
            },
        )

    def test_probes_are_health_for_liveness_and_ready_for_readiness(self):
        self.assertEqual(self.container["livenessProbe"]["httpGet"], {"path": "/health", "port": "admin"})
        self.assertEqual(self.container["readinessProbe"]["httpGet"], {"path": "/ready", "port": "admin"})

    def test_config_uses_dynamodb_checkpoints_and_the_kinesis_sink(self):
        defaults = self.config["defaults"]
        self.assertTrue(defaults["sink"].startswith("kinesis:"))
        self.assertTrue(defaults["checkpoint_store"].startswith("dynamodb:"))
        names = [p["name"] for p in self.config["pipeline"]]
        self.assertTrue(names)
        self.assertEqual(len(names), len(set(names)))

    def test_config_passes_sse_ingest_check(self):
        assert_check_passes(self, self.config_text, "the ConfigMap's config.toml")


def metric_names_in_the_code():
    """The metric names /metrics exports, without the sse_ingest_ prefix."""
    text = METRICS_SOURCE.read_text(encoding="utf-8")
    names = set(re.findall(r'^\s*\w+: \w+(?:\("\w+"\))? = "(\w+)"', text, re.M))
    names |= set(re.findall(r'^\s*"(kinesis_\w+)",', text, re.M))
    return names


class Monitoring(unittest.TestCase):
    """deploy/kubernetes/monitoring: the Prometheus Operator's ServiceMonitor and
    PrometheusRule. They are custom resources, which kubernetes-validate has no schema
    for (it bundles the core API's only) and no pinned package on the index supplies, so
    their structure is checked here, field by field (deploy/README.md)."""

    @classmethod
    def setUpClass(cls):
        cls.docs = {}
        for path in sorted(MONITORING.glob("*.yaml")):
            with open(path, encoding="utf-8") as f:
                (doc,) = [d for d in yaml.safe_load_all(f) if d is not None]
            cls.docs[doc["kind"]] = doc
        cls.core = {doc["kind"]: doc for _, doc in load_manifests()}

    def test_kinds(self):
        self.assertEqual(set(self.docs), {"ServiceMonitor", "PrometheusRule"})
        for doc in self.docs.values():
            self.assertEqual(doc["apiVersion"], "monitoring.coreos.com/v1")
            self.assertEqual(set(doc), {"apiVersion", "kind", "metadata", "spec"})
            self.assertEqual(doc["metadata"]["name"], "sse-ingest")

    def test_service_monitor_scrapes_the_admin_port_with_the_token(self):
        spec = self.docs["ServiceMonitor"]["spec"]
        self.assertEqual(set(spec), {"selector", "endpoints"})
        service = self.core["Service"]
        self.assertEqual(spec["selector"]["matchLabels"], service["metadata"]["labels"])
        (endpoint,) = spec["endpoints"]
        (port,) = service["spec"]["ports"]
        self.assertEqual(endpoint["port"], port["name"])
        self.assertEqual(endpoint["path"], "/metrics")
        self.assertEqual(set(endpoint), {"port", "path", "interval", "scrapeTimeout", "bearerTokenSecret"})
        # The same Secret and key the pods read their admin token from.
        (container,) = self.core["StatefulSet"]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        ref = env["SSE_INGEST_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
        self.assertEqual(endpoint["bearerTokenSecret"], {"name": ref["name"], "key": ref["key"]})

    def test_prometheus_rules_use_metrics_the_code_exports(self):
        (group,) = self.docs["PrometheusRule"]["spec"]["groups"]
        exported = metric_names_in_the_code()
        self.assertIn("connected", exported)
        alerts = {}
        for rule in group["rules"]:
            self.assertLessEqual(set(rule), {"alert", "expr", "for", "labels", "annotations"})
            self.assertIn(rule["labels"]["severity"], {"page", "warning"})
            self.assertTrue(rule["annotations"]["summary"])
            if "for" in rule:
                self.assertRegex(rule["for"], r"^\d+[smh]$")
            alerts[rule["alert"]] = rule["expr"]
            for metric in re.findall(r"\bsse_ingest_(\w+)", rule["expr"]):
                self.assertIn(metric.removesuffix("_total"), exported, f"{rule['alert']}: sse_ingest_{metric}")
        self.assertEqual(alerts["SseIngestPipelineNotConnected"], "sse_ingest_connected == 0")
        self.assertEqual(alerts["SseIngestShardDown"], 'up{job="sse-ingest"} == 0')
        self.assertEqual(len(alerts), 6)


if __name__ == "__main__":
    unittest.main()
