"""What the templates and manifests run, run here: each ECS shard's task definition and
each StatefulSet pod, with the container image's defaults (deploy/Dockerfile), against
kinesalite and dynalite on 127.0.0.1 and a local SSE server.

The command line and the environment are read from the artefacts (the task definition's
EntryPoint/Command/Environment, the container's command/args/env) and from the image
(ENTRYPOINT, CMD, ENV, WORKDIR) and run as a container runtime would. Only what an operator
would override to run them elsewhere is changed, through the same means an operator has:

- the AWS endpoints and credentials, with the SDK's standard variables
  (AWS_ENDPOINT_URL_KINESIS, AWS_ENDPOINT_URL_DYNAMODB, AWS_ACCESS_KEY_ID, ...);
- the admin address, with SSE_INGEST_ADMIN=127.0.0.1:0 (the port is read from the log);
- paths: the image's binary and precompiled components, the volumes (state directory,
  mounted config) become temporary directories;
- the pods' hostnames (sse-ingest-0, ...), given by a UTS namespace (unshare --uts);
- the pipelines' URLs (the ConfigMap's point at public servers; the ECS PipelinesConfig
  parameter is ours to give), which point at the local SSE server, one path per pipeline.

The container's confinement is kept: the process runs as the artefact's (or the image's)
user and group without capabilities, and where the artefact makes the root filesystem
read-only, every mount but /proc, /sys and /dev is read-only in the process's own mount
namespace and only the writable volumes are not, so a write outside them fails here as it
would in the task or the pod.

Each shard (task or pod) then has to start, answer /health and /ready (every pipeline
connected to its stream, its sink and its checkpoint table), run exactly the pipelines
`sse-ingest shards` assigns it (per /pipelines, and per the connections the SSE server saw
from that process), write every event to the stream and its checkpoint to the table, pass
the artefact's own health check, and exit 0 on SIGTERM within the artefact's stop timeout.

Needs Node.js with kinesalite and dynalite (scripts/setup.sh --tests), unshare(1) and
setpriv(1) (util-linux) with the right to make UTS and mount namespaces and to change user
(root), and the binary (SSE_INGEST_BIN). On its own:

    target/deploy-venv/bin/python -m unittest discover -s deploy/tests -p test_runs_as_deployed.py -v
"""

import base64
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import tomllib
import unittest
import urllib.error
import urllib.request
from pathlib import Path

from support import DEPLOY, Evaluator, load_manifests, load_template, sse_ingest_bin

REPOSITORY = DEPLOY.parent
SHARD_TEMPLATE = "sse-ingest-shard.yaml"
MAIN_TEMPLATE = "sse-ingest.yaml"

# How many shards the ECS stack gets here, and the pipelines it is given (PipelinesConfig):
# enough that each shard runs some (checked against `sse-ingest shards`).
ECS_SHARD_COUNT = 2
ECS_PIPELINES = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
ECS_STREAM = "sse-ingest-deployed"
ECS_TABLE = "sse-ingest-deployed-checkpoints"

# Events per stream: ids 1..EVENTS, then the connection stays open (a quiet live stream).
EVENTS = 5
# How long the SSE server keeps a connection open at most (the tests end long before).
HOLD_SECONDS = 120
# The token the admin Secret holds here (a Secret is never committed; the user makes it).
ADMIN_TOKEN = "test-token-not-a-secret"
# The PATH of the runtime image (debian:bookworm-slim), where no ENV sets one.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# Bounds of every wait (seconds).
START_LIMIT = 120
PRECOMPILE_LIMIT = 900
REQUEST_TIMEOUT = 10


# ---------------------------------------------------------------------- the image


class Image:
    """The runtime stage of deploy/Dockerfile (what follows the last FROM), as Docker reads
    it, and where the build stage's `sse-ingest precompile DIR` writes."""

    def __init__(self):
        self.env = {}
        self.user = ""
        self.workdir = "/"
        self.volumes = []
        self.entrypoint = []
        self.cmd = []
        self.healthcheck = []
        self.precompile_dir = ""
        instructions, current = [], ""
        for line in (DEPLOY / "Dockerfile").read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if line.startswith("#") or (not line and not current):
                continue
            if line.endswith("\\"):
                current += line[:-1]
            else:
                instructions.append(current + line)
                current = ""
        for instruction in instructions:
            keyword, _, rest = instruction.partition(" ")
            rest = rest.strip()
            if keyword == "FROM":
                # A new stage: only the last one's settings count.
                self.env, self.user, self.workdir = {}, "", "/"
                self.volumes, self.entrypoint, self.cmd, self.healthcheck = [], [], [], []
            elif keyword == "RUN" and "sse-ingest precompile" in rest:
                self.precompile_dir = rest.split()[-1]
            elif keyword == "ENV":
                name, _, value = rest.partition("=")
                self.env[name] = value
            elif keyword == "USER":
                self.user = rest
            elif keyword == "WORKDIR":
                self.workdir = rest
            elif keyword == "VOLUME":
                self.volumes = json.loads(rest)
            elif keyword == "ENTRYPOINT":
                self.entrypoint = json.loads(rest)
            elif keyword == "CMD":
                self.cmd = json.loads(rest)
            elif keyword == "HEALTHCHECK":
                self.healthcheck = json.loads(rest.split(" CMD ", 1)[1])


class Paths:
    """The image's and the artefact's paths on this machine: a path is mapped when it is one
    of these or lies below one."""

    def __init__(self):
        self.pairs = []

    def add(self, image_path, here):
        self.pairs.append((image_path.rstrip("/") or "/", Path(here)))

    def map(self, value):
        for image_path, here in sorted(self.pairs, key=lambda pair: -len(pair[0])):
            if value == image_path:
                return str(here)
            if value.startswith(image_path + "/"):
                return str(here / value[len(image_path) + 1 :])
        return value

    def map_in_config(self, text):
        """The same paths inside a TOML config: the quoted values that are one of them. A
        text replacement, as an operator would edit the file (state_dir is such a path)."""
        for image_path, here in self.pairs:
            text = text.replace(f'"{image_path}"', json.dumps(str(here)))
        return text


_PRECOMPILED = {}


def precompiled_components(test, image):
    """What the image build runs (`sse-ingest precompile DIR`), once for this module."""
    test.assertTrue(image.precompile_dir, "the Dockerfile's build stage runs no `sse-ingest precompile DIR`")
    if "dir" not in _PRECOMPILED:
        command = [str(binary(test)), "precompile"]
        directory = Path(tempfile.mkdtemp(prefix="sse-ingest-precompiled-"))
        # The image's /usr/local/lib: readable by its runtime user, owned by root.
        directory.chmod(0o755)
        _PRECOMPILED["dir"] = directory
        _PRECOMPILED["result"] = subprocess.run(
            command + [str(directory)], capture_output=True, text=True, timeout=PRECOMPILE_LIMIT
        )
    result = _PRECOMPILED["result"]
    test.assertEqual(result.returncode, 0, f"`sse-ingest precompile` failed:\n{result.stderr}")
    return _PRECOMPILED["dir"]


def tearDownModule():
    if "dir" in _PRECOMPILED:
        shutil.rmtree(_PRECOMPILED["dir"], ignore_errors=True)


def binary(test):
    # Absolute: the processes run in their own working directories.
    return sse_ingest_bin(test).resolve()


# ---------------------------------------------------------------------- local AWS


class NodeServer:
    """`node tests/NAME/start.js` (kinesalite or dynalite) on 127.0.0.1; it prints its port
    and exits when its stdin closes."""

    def __init__(self, test, name):
        directory = REPOSITORY / "tests" / name
        if not (directory / "node_modules" / name).is_dir():
            test.fail(f"{name} is not installed: run scripts/setup.sh --tests (npm ci in tests/{name})")
        node = shutil.which("node")
        if node is None:
            test.fail(f"Node.js is needed for {name} (scripts/setup.sh --tests)")
        self.process = subprocess.Popen(
            [node, str(directory / "start.js")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        test.addCleanup(self.stop)
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise AssertionError(f"{name} printed {line!r} instead of its port")
        self.endpoint = f"http://127.0.0.1:{line}"

    def stop(self):
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stdin.close()
        self.process.stdout.close()


def aws_call(endpoint, service, target, body):
    """One JSON API call. The local servers check the Authorization header's shape, not its
    signature."""
    content_type = "application/x-amz-json-1.1" if service == "kinesis" else "application/x-amz-json-1.0"
    request = urllib.request.Request(
        endpoint + "/",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Content-Type": content_type,
            "X-Amz-Target": target,
            "X-Amz-Date": "20260101T000000Z",
            "Authorization": (
                f"AWS4-HMAC-SHA256 Credential=local/20260101/us-east-1/{service}/aws4_request, "
                "SignedHeaders=host, Signature=0"
            ),
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            return json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{target} answered {error.code}: {error.read().decode(errors='replace')}") from None


def wait_until(what, probe, limit=START_LIMIT, interval=0.1):
    """Polls `probe` until it returns a true value (returned), or fails naming `what` and the
    last value seen."""
    deadline = time.monotonic() + limit
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {limit} s (last: {last!r})")


class LocalAws:
    """kinesalite and dynalite, with the stream and the checkpoint table the artefacts name."""

    def __init__(self, test, stream, table):
        self.kinesis = NodeServer(test, "kinesalite").endpoint
        self.dynamodb = NodeServer(test, "dynalite").endpoint
        self.stream, self.table = stream, table
        aws_call(self.kinesis, "kinesis", "Kinesis_20131202.CreateStream", {"StreamName": stream, "ShardCount": 1})
        aws_call(
            self.dynamodb,
            "dynamodb",
            "DynamoDB_20120810.CreateTable",
            {
                "TableName": table,
                "AttributeDefinitions": [{"AttributeName": "pipeline", "AttributeType": "S"}],
                "KeySchema": [{"AttributeName": "pipeline", "KeyType": "HASH"}],
                "BillingMode": "PAY_PER_REQUEST",
            },
        )
        wait_until(
            f"stream {stream} ACTIVE",
            lambda: aws_call(
                self.kinesis, "kinesis", "Kinesis_20131202.DescribeStreamSummary", {"StreamName": stream}
            )["StreamDescriptionSummary"]["StreamStatus"]
            == "ACTIVE",
            limit=30,
        )
        wait_until(
            f"table {table} ACTIVE",
            lambda: aws_call(self.dynamodb, "dynamodb", "DynamoDB_20120810.DescribeTable", {"TableName": table})[
                "Table"
            ]["TableStatus"]
            == "ACTIVE",
            limit=30,
        )

    def environment(self):
        """What an operator sets to point the AWS SDK elsewhere."""
        return {
            "AWS_ENDPOINT_URL_KINESIS": self.kinesis,
            "AWS_ENDPOINT_URL_DYNAMODB": self.dynamodb,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        }

    def records(self):
        """Every record's data in the stream, decoded."""
        out = []
        shards = aws_call(self.kinesis, "kinesis", "Kinesis_20131202.ListShards", {"StreamName": self.stream})
        for shard in shards["Shards"]:
            iterator = aws_call(
                self.kinesis,
                "kinesis",
                "Kinesis_20131202.GetShardIterator",
                {"StreamName": self.stream, "ShardId": shard["ShardId"], "ShardIteratorType": "TRIM_HORIZON"},
            )["ShardIterator"]
            for _ in range(1000):
                page = aws_call(
                    self.kinesis, "kinesis", "Kinesis_20131202.GetRecords", {"ShardIterator": iterator, "Limit": 10000}
                )
                out.extend(base64.b64decode(record["Data"]) for record in page["Records"])
                if not page["Records"] and page.get("MillisBehindLatest", 0) == 0:
                    break
                iterator = page.get("NextShardIterator")
                if iterator is None:
                    break
            else:
                raise AssertionError("GetRecords did not reach the end of the shard")
        return out

    def checkpoints(self):
        """Every checkpoint item of the table, as {attribute: plain value}: all items but the
        deployment's stream key (`#stream-key`, or `NS/#stream-key`), which keys the hashes of
        the stream URLs and is no pipeline's."""
        items = aws_call(
            self.dynamodb, "dynamodb", "DynamoDB_20120810.Scan", {"TableName": self.table, "ConsistentRead": True}
        )["Items"]
        plain = [{name: next(iter(value.values())) for name, value in item.items()} for item in items]
        return [item for item in plain if not item["pipeline"].split("/")[-1].startswith("#")]


def event_of(record):
    """(pipeline, event number) of a record: the event's data, as the raw or envelope format
    or the `wikimedia` filter's projection carries it (`title` and `id` are ours)."""
    value = json.loads(record)
    if isinstance(value.get("data"), str):
        value = json.loads(value["data"])
    return value["title"], int(value["id"])


# ---------------------------------------------------------------------- SSE server


def socket_owner(client_port, server_port):
    """The process holding the client end of a TCP connection on 127.0.0.1 (root may look
    into every process), or None."""
    inode = None
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        for line in table:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if local == f"0100007F:{client_port:04X}" and remote == f"0100007F:{server_port:04X}":
                inode = fields[9]
                break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return int(pid)
        except OSError:
            continue
    return None


def event_data(pipeline, n):
    """A recentchange-like event (what the artefacts' pipelines and the `wikimedia` filter
    expect), naming its pipeline in `title` and its number in `id`."""
    return {
        "$schema": "/mediawiki/recentchange/1.0.0",
        "meta": {"domain": "test.example.org", "id": f"{pipeline}-{n}", "stream": "mediawiki.recentchange"},
        "id": n,
        "type": "edit",
        "title": pipeline,
        "user": "tester",
        "bot": False,
        "wiki": "testwiki",
        "timestamp": 1767225600 + n,
        "length": {"old": 100, "new": 100 + n},
    }


class SseServer:
    """A threaded SSE server on 127.0.0.1: GET /NAME answers `text/event-stream` (chunked)
    with events 1..EVENTS of stream NAME (those after Last-Event-ID), then keeps the
    connection open until closed (at most HOLD_SECONDS). Each request is logged with the
    process that made it."""

    def __init__(self):
        self.requests = []
        self.lock = threading.Lock()
        self.closing = threading.Event()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                name = self.path.strip("/")
                owner = socket_owner(self.client_address[1], server.port)
                last = self.headers.get("Last-Event-ID") or "0"
                with server.lock:
                    server.requests.append({"name": name, "pid": owner, "last_event_id": last})
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for n in range(int(last) + 1, EVENTS + 1):
                        self.chunk(f"id: {n}\ndata: {json.dumps(event_data(name, n))}\n\n")
                    # A quiet stream: a comment now and then, as live servers send, so
                    # that no idle timeout makes the reader reconnect.
                    deadline = time.monotonic() + HOLD_SECONDS
                    while not server.closing.wait(5) and time.monotonic() < deadline:
                        self.chunk(": keep-alive\n\n")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                self.close_connection = True

            def chunk(self, text):
                data = text.encode()
                self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                self.wfile.flush()

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def log(self):
        with self.lock:
            return list(self.requests)

    def close(self):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()


# ---------------------------------------------------------------------- the process


class Confinement:
    """What the orchestrator confines a container to, as its artefact (or the image) says:
    a user and group, no capabilities, and perhaps a read-only root filesystem with its
    writable volumes. Applied by `wrap` with a mount namespace and setpriv(1)."""

    def __init__(self, user, read_only_root, writable):
        uid, _, gid = str(user).partition(":")
        # A user without a group runs with the user's own group (the image's 65532:65532).
        self.uid, self.gid = int(uid), int(gid or uid)
        self.read_only_root = bool(read_only_root)
        self.writable = [Path(p) for p in writable]
        for path in self.writable:
            # The runtime gives a volume to the container's user (the image's directory
            # owner on ECS, fsGroup on Kubernetes).
            os.chown(path, self.uid, self.gid)

    def wrap(self, argv, hostname=None):
        """`argv` run as the container would run it (the process id stays the same)."""
        script, namespaces = ["set -eu"], []
        if hostname is not None:
            namespaces.append("--uts")
            script.append(f"hostname {shlex.quote(hostname)}")
        if self.read_only_root:
            namespaces.append("--mount")
            volumes = [shlex.quote(str(path)) for path in self.writable]
            script += [f"mount --bind {v} {v}" for v in volumes]
            # Every other mount read-only (in this namespace only); the kernel's own
            # filesystems stay as a container runtime leaves them.
            script.append(
                "awk '{print $5}' /proc/self/mountinfo | sort -u | while read -r point; do\n"
                f"  case $point in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*{''.join('|' + v for v in volumes)}) continue ;; esac\n"
                '  mount -o remount,bind,ro "$point"\n'
                "done"
            )
        script.append(
            f"exec setpriv --reuid={self.uid} --regid={self.gid} --clear-groups --no-new-privs"
            ' --inh-caps=-all --bounding-set=-all -- "$@"'
        )
        for tool in ("unshare", "setpriv"):
            if shutil.which(tool) is None:
                raise AssertionError(f"{tool}(1) (util-linux) is needed to confine the container")
        prefix = [shutil.which("unshare"), *namespaces] if namespaces else []
        return [*prefix, "sh", "-c", "\n".join(script), "sh", *argv]

    def check(self, test, pid, name):
        """The running process `pid` is confined so (a wrapper that did nothing fails here)."""
        status = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines()
        )
        test.assertNotEqual(self.uid, 0, f"{name} runs as root")
        test.assertEqual(status["Uid"].split(), [str(self.uid)] * 4, f"{name}'s user")
        test.assertEqual(status["Gid"].split(), [str(self.gid)] * 4, f"{name}'s group")
        test.assertEqual(int(status["CapEff"], 16), 0, f"{name}'s capabilities")
        test.assertEqual(int(status["CapBnd"], 16), 0, f"{name}'s capability bounding set")
        mounts = {}
        for line in Path(f"/proc/{pid}/mountinfo").read_text(encoding="utf-8").splitlines():
            fields = line.split()
            # The last mount at a point is the one the process sees.
            mounts[fields[4]] = fields[5].split(",")
        test.assertEqual("ro" in mounts["/"], self.read_only_root, f"{name}'s root filesystem: {mounts['/']}")
        if self.read_only_root:
            for path in self.writable:
                test.assertIn("rw", mounts.get(str(path), []), f"{name}'s volume {path}")


class Container:
    """One container as the artefact describes it, mapped to this machine, then run."""

    def __init__(self, test, label, argv, env, workdir, paths, confinement, hostname=None, token=None):
        self.test, self.label = test, label
        self.argv, self.env, self.workdir, self.paths = argv, env, workdir, paths
        self.confinement, self.hostname, self.token = confinement, hostname, token
        # What the orchestrator runs to see the container is healthy: set by the artefact.
        self.health_check = None
        self.log_path = Path(workdir).parent / "container.log"
        self.process = None
        self.admin = None

    def config_text(self):
        """The config the process reads: `--config FILE` or `--config env:NAME`."""
        source = self.argv[self.argv.index("--config") + 1]
        if source.startswith("env:"):
            return self.env[source.removeprefix("env:")]
        return Path(source).read_text(encoding="utf-8")

    def start(self):
        # Its user, its read-only root, and for a pod a UTS namespace of its own named as
        # the pod; `exec` keeps the process id.
        argv = self.confinement.wrap(self.argv, hostname=self.hostname)
        log = open(self.log_path, "wb")
        self.test.addCleanup(log.close)
        self.process = subprocess.Popen(
            argv, env=self.env, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
        )
        self.test.addCleanup(self.kill)

    def wait_for_admin(self):
        """The admin API's address, from the log (its port was the system's choice)."""
        self.admin = wait_until(f"{self.name()}: `admin API listening` in the log", self.admin_address)
        self.confinement.check(self.test, self.process.pid, self.name())

    def name(self):
        return self.label

    def log(self):
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def admin_address(self):
        if self.process.poll() is not None:
            raise AssertionError(f"{self.name()} exited with {self.process.returncode}:\n{self.log()}")
        for line in self.log().splitlines():
            if "admin API listening" not in line:
                continue
            try:
                address = find_key(json.loads(line), "address")
            except ValueError:
                match = re.search(r"address=(\S+)", line)
                address = match and match.group(1)
            if address:
                return address.strip('"')
        return None

    def get(self, path, token=True):
        headers = {"Authorization": f"Bearer {self.token}"} if token and self.token else {}
        request = urllib.request.Request(f"http://{self.admin}{path}", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()
        except OSError as error:
            return None, str(error)

    def pipelines(self):
        status, body = self.get("/pipelines")
        self.test.assertEqual(status, 200, body)
        return {p["name"]: p for p in json.loads(body)["pipelines"]}

    def terminate(self, limit):
        """SIGTERM, then the exit code within `limit` seconds."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.name()} did not exit within {limit} s of SIGTERM:\n{self.log()}") from None

    def kill(self):
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def find_key(node, key):
    """The first value of `key` anywhere in a parsed JSON document."""
    if isinstance(node, dict):
        if key in node:
            return node[key]
        for value in node.values():
            found = find_key(value, key)
            if found is not None:
                return found
    elif isinstance(node, list):
        for value in node:
            found = find_key(value, key)
            if found is not None:
                return found
    return None


def assignment(test, config_text, count):
    """`sse-ingest shards CONFIG --count N`: the pipeline names of each shard."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.toml"
        path.write_text(config_text, encoding="utf-8")
        result = subprocess.run(
            [str(binary(test)), "shards", str(path), "--count", str(count)],
            env={**os.environ, "SSE_INGEST_ADMIN_TOKEN": ADMIN_TOKEN},
            capture_output=True,
            text=True,
            timeout=120,
        )
    test.assertEqual(result.returncode, 0, result.stderr)
    shards = {}
    for line in result.stdout.splitlines():
        match = re.fullmatch(r"shard (\d+)/(\d+): (\d+) pipelines?(?:: (.*))?", line)
        test.assertIsNotNone(match, f"`sse-ingest shards` printed {line!r}")
        test.assertEqual(int(match.group(2)), count)
        names = set(match.group(4).split(", ")) if match.group(4) else set()
        test.assertEqual(len(names), int(match.group(3)), line)
        shards[int(match.group(1))] = names
    test.assertEqual(set(shards), set(range(count)), result.stdout)
    return shards


# ---------------------------------------------------------------------- the checks


class RunsAsDeployed(unittest.TestCase):
    """What both the ECS shards and the pods must do, once their containers are mapped."""

    def base_environment(self, home):
        # A container starts with only the image's and the artefact's variables; PATH is the
        # image's, HOME the runtime user's home (the state volume): nothing of this
        # machine's environment (proxies, AWS profiles) reaches the process.
        return {"PATH": IMAGE_PATH, "HOME": str(home)}

    def check_shards_run_as_deployed(self, containers, expected, aws, server, stop_limit):
        """Starts every container at once (as a deployment does), then checks each."""
        everything = set().union(*expected.values())
        for container in containers.values():
            container.start()
        for container in containers.values():
            container.wait_for_admin()
        for shard, container in containers.items():
            with self.subTest(shard=container.name()):
                wait_until(f"{container.name()}: /health 200", lambda: container.get("/health", token=False)[0] == 200)
                wait_until(f"{container.name()}: /ready 200", lambda: container.get("/ready", token=False)[0] == 200)
                self.assertEqual(set(container.pipelines()), expected[shard], f"{container.name()} runs other pipelines")
                # Every event of each of its streams written (a record per event).
                wait_until(
                    f"{container.name()}: every event written",
                    lambda: {n: p["records_written"] for n, p in container.pipelines().items()}
                    == {n: EVENTS for n in expected[shard]},
                )
                status, metrics = container.get("/metrics")
                self.assertEqual(status, 200, metrics)
                for name in expected[shard]:
                    written = rf'(?m)^sse_ingest_records_written_total\{{[^}}]*pipeline="{re.escape(name)}"[^}}]*\}} '
                    self.assertRegex(metrics, written + rf"{EVENTS}(\.0)?$")
                container.health_check(container)

        # Who connected to which stream, from the server's side: each shard's own pipelines,
        # each once.
        log = server.log()
        pids = {container.process.pid: shard for shard, container in containers.items()}
        self.assertEqual(
            sorted(r["name"] for r in log), sorted(everything), f"one connection per pipeline expected: {log}"
        )
        for shard, container in containers.items():
            connected = {r["name"] for r in log if r["pid"] == container.process.pid}
            self.assertEqual(connected, expected[shard], f"streams read by {container.name()}: {log}")
        self.assertEqual([r for r in log if r["pid"] not in pids], [], "connections from unknown processes")

        # Every event of every stream is in Kinesis.
        seen = {}
        for record in aws.records():
            pipeline, n = event_of(record)
            seen.setdefault(pipeline, set()).add(n)
        self.assertEqual(seen, {name: set(range(1, EVENTS + 1)) for name in everything})

        for shard, container in containers.items():
            code = container.terminate(stop_limit)
            self.assertEqual(code, 0, f"{container.name()} on SIGTERM:\n{container.log()}")
            log = container.log()
            self.assertNotIn("panicked", log)
            self.assertEqual([line for line in log.splitlines() if '"level":"ERROR"' in line], [], container.name())
            # The image's precompiled components were found (SSE_INGEST_PRECOMPILED_DIR):
            # nothing was compiled into the volume's component cache.
            compiled = [p for p in Path(container.workdir).rglob("*") if "component-cache" in p.parts and p.is_file()]
            self.assertEqual(compiled, [], f"{container.name()} compiled components at start")

        # Each pipeline's checkpoint is its stream's last event, written by its shard.
        checkpoints = aws.checkpoints()
        for name in everything:
            items = [c for c in checkpoints if c["pipeline"] == name or c["pipeline"].endswith("/" + name)]
            self.assertEqual(len(items), 1, f"checkpoint of {name}: {checkpoints}")
            self.assertEqual(items[0].get("last_event_id"), str(EVENTS), f"checkpoint of {name}: {items[0]}")
        self.assertEqual(len(checkpoints), len(everything), checkpoints)
        return checkpoints


# ---------------------------------------------------------------------- ECS


class Resolver:
    """A task definition's properties with the template's intrinsics evaluated (support's
    Evaluator for the strings; Fn::If and AWS::NoValue here)."""

    def __init__(self, evaluator):
        self.ev = evaluator

    def __call__(self, node):
        if isinstance(node, list):
            return [v for v in (self(x) for x in node) if v is not NO_VALUE]
        if isinstance(node, dict):
            if len(node) == 1:
                (key, arg), = node.items()
                if key == "Fn::If":
                    condition, yes, no = arg
                    return self(yes if self.ev.condition(condition) else no)
                if key == "Ref" and arg == "AWS::NoValue":
                    return NO_VALUE
                if key == "Ref" or key.startswith("Fn::"):
                    return self.ev.string(node)
            return {k: v for k, v in ((k, self(v)) for k, v in node.items()) if v is not NO_VALUE}
        return node


NO_VALUE = object()


def toml_string(value):
    # A TOML basic string: JSON's escapes are TOML's for these values (ASCII, no control).
    return json.dumps(value)


class EcsShards(RunsAsDeployed):
    """deploy/aws/sse-ingest-shard.yaml, instantiated for each shard as sse-ingest.yaml does."""

    @classmethod
    def setUpClass(cls):
        cls.shard_template = load_template(SHARD_TEMPLATE)
        cls.main_template = load_template(MAIN_TEMPLATE)
        cls.image = Image()

    def pipelines_config(self, server):
        """The PipelinesConfig parameter as a user gives it: the template's default pipeline
        (its filter, format and partition key) under other names, reading the local server,
        written the way the default is (one line, `pipeline = [{...}, ...]`)."""
        default = tomllib.loads(self.main_template["Parameters"]["PipelinesConfig"]["Default"])
        (pipeline,) = default["pipeline"]
        tables = []
        for name in ECS_PIPELINES:
            fields = {**pipeline, "name": name, "url": server.url(name)}
            tables.append("{ " + ", ".join(f"{k} = {toml_string(v)}" for k, v in fields.items()) + " }")
        return "pipeline = [" + ", ".join(tables) + "]"

    def task_container(self, index, pipelines_config):
        """The sse-ingest container of shard `index`'s task definition, resolved for the
        parameters the main template passes (Shard0..: ShardIndex, ShardCount, ...)."""
        parameters = {
            "ShardIndex": index,
            "ShardCount": ECS_SHARD_COUNT,
            "StreamName": ECS_STREAM,
            "TableName": ECS_TABLE,
            "PipelinesConfig": pipelines_config,
            "ContainerImage": "sse-ingest:test",
            "LogGroupName": "sse-ingest-test-logs",
        }
        # Any other parameter: its default, or a placeholder naming it.
        for name, spec in self.shard_template["Parameters"].items():
            parameters.setdefault(name, spec.get("Default", f"placeholder-{name}"))
        resolve = Resolver(Evaluator(self.shard_template, parameters))
        definitions = [
            r for r in self.shard_template["Resources"].values() if r["Type"] == "AWS::ECS::TaskDefinition"
        ]
        self.assertEqual(len(definitions), 1, "one task definition per shard")
        containers = [
            c
            for c in resolve(definitions[0]["Properties"]["ContainerDefinitions"])
            if c["Image"] == parameters["ContainerImage"]
        ]
        self.assertEqual(len(containers), 1, "one container runs the sse-ingest image")
        return containers[0]

    def mapped_container(self, label, definition, aws, root, precompiled):
        """The container's command line and environment as ECS and the image make them, with
        the paths, endpoints and admin address mapped."""
        root.mkdir(parents=True)
        paths = Paths()
        paths.add(self.image.entrypoint[0], binary(self))
        paths.add(self.image.env["SSE_INGEST_PRECOMPILED_DIR"], precompiled)
        writable = []
        for mount in definition.get("MountPoints", []):
            # Task storage (a volume without a host path): an empty directory per task.
            local = root / f"mount-{mount['SourceVolume']}"
            local.mkdir(exist_ok=True)
            paths.add(mount["ContainerPath"], local)
            if not mount.get("ReadOnly", False):
                writable.append(local)
        confinement = Confinement(
            definition.get("User", self.image.user), definition.get("ReadonlyRootFilesystem", False), writable
        )
        workdir = Path(paths.map(definition.get("WorkingDirectory", self.image.workdir)))
        self.assertTrue(workdir.is_dir(), f"the working directory {workdir} is not a volume")

        entrypoint = definition.get("EntryPoint", self.image.entrypoint)
        command = definition.get("Command", self.image.cmd if "EntryPoint" not in definition else [])
        argv = [paths.map(str(a)) for a in entrypoint + command]

        env = self.base_environment(workdir)
        env.update({k: paths.map(v) for k, v in self.image.env.items()})
        for variable in definition.get("Environment", []):
            env[variable["Name"]] = str(variable["Value"])
        for secret in definition.get("Secrets", []):
            env[secret["Name"]] = f"test-value-of-{secret['Name']}"
        # The config may sit in a variable: its state_dir is a path of the task, mapped.
        source = argv[argv.index("--config") + 1]
        if source.startswith("env:"):
            name = source.removeprefix("env:")
            env[name] = paths.map_in_config(env[name])
        env.update(aws.environment())
        env["SSE_INGEST_ADMIN"] = "127.0.0.1:0"
        container = Container(self, label, argv, env, str(workdir), paths, confinement)
        container.health_check = self.ecs_health_check(definition)
        return container

    def ecs_health_check(self, definition):
        def check(container):
            command = definition["HealthCheck"]["Command"]
            self.assertEqual(command[0], "CMD", "an exec-form health check (the image has no shell)")
            argv = [
                container.admin if re.fullmatch(r"127\.0\.0\.1:\d+", a) else container.paths.map(a)
                for a in command[1:]
            ]
            # Inside the container: as its user, on its read-only root.
            result = subprocess.run(
                container.confinement.wrap(argv), capture_output=True, text=True, timeout=60, env=container.env
            )
            self.assertEqual(result.returncode, 0, f"the task's health check {argv}:\n{result.stderr}")

        return check

    def test_each_ecs_shard_runs_exactly_its_pipelines_and_stops_on_sigterm(self):
        precompiled = precompiled_components(self, self.image)
        aws = LocalAws(self, ECS_STREAM, ECS_TABLE)
        server = SseServer()
        self.addCleanup(server.close)
        pipelines_config = self.pipelines_config(server)
        root = Path(tempfile.mkdtemp(prefix="sse-ingest-ecs-"))
        root.chmod(0o755)
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)

        containers, definitions = {}, {}
        for index in range(ECS_SHARD_COUNT):
            definitions[index] = self.task_container(index, pipelines_config)
            containers[index] = self.mapped_container(
                f"ECS shard {index}/{ECS_SHARD_COUNT}", definitions[index], aws, root / f"shard-{index}", precompiled
            )
        config = containers[0].config_text()
        # Every shard carries the same pipelines (only the shard differs).
        for container in containers.values():
            self.assertEqual(tomllib.loads(container.config_text())["pipeline"], tomllib.loads(config)["pipeline"])
        expected = assignment(self, config, ECS_SHARD_COUNT)
        for index, names in expected.items():
            self.assertTrue(names, f"shard {index} gets no pipeline: choose other ECS_PIPELINES")
        self.assertEqual(set().union(*expected.values()), set(ECS_PIPELINES))

        # ECS sends SIGKILL StopTimeout seconds after SIGTERM.
        stop_limit = max(int(d["StopTimeout"]) for d in definitions.values())
        self.check_shards_run_as_deployed(containers, expected, aws, server, stop_limit)


# ---------------------------------------------------------------------- Kubernetes


class StatefulSetPods(RunsAsDeployed):
    """deploy/kubernetes: each pod of the StatefulSet, named as Kubernetes names it."""

    @classmethod
    def setUpClass(cls):
        docs = [doc for _, doc in load_manifests()]
        (cls.sts,) = [d for d in docs if d["kind"] == "StatefulSet"]
        cls.configmaps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
        cls.pod = cls.sts["spec"]["template"]["spec"]
        (cls.container,) = cls.pod["containers"]
        cls.image = Image()

    def mapped_pod(self, hostname, root, precompiled, aws, urls):
        """The pod's container as the kubelet and the image make it, with the paths,
        endpoints and admin address mapped, and the ConfigMap's URLs pointing here."""
        volumes = {v["name"]: v for v in self.pod.get("volumes", [])}
        paths = Paths()
        paths.add(self.image.entrypoint[0], binary(self))
        paths.add(self.image.env["SSE_INGEST_PRECOMPILED_DIR"], precompiled)
        config_files, writable = [], []
        for mount in self.container.get("volumeMounts", []):
            self.assertNotIn("subPath", mount, "subPath mounts are not mapped here")
            volume = volumes[mount["name"]]
            local = root / f"volume-{mount['name']}"
            local.mkdir(parents=True)
            if "configMap" in volume:
                # A ConfigMap volume is read-only whatever the mount says.
                for key, text in self.configmaps[volume["configMap"]["name"]]["data"].items():
                    (local / key).write_text(text, encoding="utf-8")
                    config_files.append(local / key)
            else:
                self.assertIn("emptyDir", volume, f"volume {mount['name']}: only configMap and emptyDir are mapped")
                if not mount.get("readOnly", False):
                    writable.append(local)
            paths.add(mount["mountPath"], local)
        # The container's securityContext over the pod's, over the image's USER.
        pod_context = self.pod.get("securityContext", {})
        context = {**pod_context, **self.container.get("securityContext", {})}
        image_uid, _, image_gid = self.image.user.partition(":")
        user = f"{context.get('runAsUser', image_uid)}:{context.get('runAsGroup', image_gid or image_uid)}"
        confinement = Confinement(user, context.get("readOnlyRootFilesystem", False), writable)
        workdir = Path(paths.map(self.container.get("workingDir", self.image.workdir)))
        self.assertTrue(workdir.is_dir(), f"the working directory {workdir} is not a volume")

        entrypoint = self.container.get("command", self.image.entrypoint)
        args = self.container.get("args", self.image.cmd if "command" not in self.container else [])
        argv = [paths.map(str(a)) for a in entrypoint + args]
        # The ConfigMap's files: the image's paths (state_dir) mapped, and the public
        # streams' URLs replaced by the local server's (text replacement, each URL once).
        for path in config_files:
            text = paths.map_in_config(path.read_text(encoding="utf-8"))
            for url, local in urls.items():
                text = text.replace(toml_string(url), toml_string(local))
            path.write_text(text, encoding="utf-8")

        env = self.base_environment(workdir)
        env.update({k: paths.map(v) for k, v in self.image.env.items()})
        for variable in self.container.get("env", []):
            if "value" in variable:
                env[variable["name"]] = paths.map(str(variable["value"]))
                continue
            source = variable["valueFrom"]
            if "secretKeyRef" in source:
                # The admin token's Secret (made by the user); the only secret there is.
                env[variable["name"]] = ADMIN_TOKEN
            elif source.get("fieldRef", {}).get("fieldPath") == "metadata.name":
                env[variable["name"]] = hostname
            else:
                self.fail(f"env {variable['name']}: {source} is not mapped here")
        env.update(aws.environment())
        env["SSE_INGEST_ADMIN"] = "127.0.0.1:0"
        container = Container(
            self, f"pod {hostname}", argv, env, str(workdir), paths, confinement, hostname=hostname, token=ADMIN_TOKEN
        )
        container.health_check = self.probes
        return container

    def probes(self, container):
        """The kubelet's liveness and readiness probes, at the mapped admin port."""
        for kind in ("livenessProbe", "readinessProbe"):
            probe = self.container[kind]["httpGet"]
            status, body = container.get(probe["path"], token=False)
            self.assertEqual(status, 200, f"{kind} {probe['path']} of {container.name()}: {body}")

    def test_each_statefulset_pod_runs_exactly_its_pipelines_and_stops_on_sigterm(self):
        precompiled = precompiled_components(self, self.image)
        config_source = self.container["args"][self.container["args"].index("--config") + 1]
        mount = next(m for m in self.container["volumeMounts"] if config_source.startswith(m["mountPath"] + "/"))
        volume = next(v for v in self.pod["volumes"] if v["name"] == mount["name"])
        config_text = self.configmaps[volume["configMap"]["name"]]["data"][config_source.rsplit("/", 1)[1]]
        config = tomllib.loads(config_text)
        aws = LocalAws(
            self,
            config["defaults"]["sink"].removeprefix("kinesis:"),
            config["defaults"]["checkpoint_store"].removeprefix("dynamodb:"),
        )
        server = SseServer()
        self.addCleanup(server.close)
        urls = {p["url"]: server.url(p["name"]) for p in config["pipeline"]}
        self.assertEqual(len(urls), len(config["pipeline"]), "two pipelines read the same URL")
        root = Path(tempfile.mkdtemp(prefix="sse-ingest-pods-"))
        root.chmod(0o755)
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)

        replicas = self.sts["spec"]["replicas"]
        hostnames = [f"{self.sts['metadata']['name']}-{ordinal}" for ordinal in range(replicas)]
        self.assertEqual(hostnames, ["sse-ingest-0", "sse-ingest-1"])
        containers = {
            ordinal: self.mapped_pod(hostname, root / hostname, precompiled, aws, urls)
            for ordinal, hostname in enumerate(hostnames)
        }
        mapped_config = containers[0].config_text()
        self.assertEqual({p["url"] for p in tomllib.loads(mapped_config)["pipeline"]}, set(urls.values()))
        expected = assignment(self, mapped_config, replicas)
        self.assertEqual(set().union(*expected.values()), {p["name"] for p in config["pipeline"]})

        # The kubelet sends SIGKILL terminationGracePeriodSeconds after SIGTERM.
        stop_limit = int(self.pod["terminationGracePeriodSeconds"])
        checkpoints = self.check_shards_run_as_deployed(containers, expected, aws, server, stop_limit)
        # Each checkpoint's owner names the pod that ran the pipeline (its hostname).
        for ordinal, names in expected.items():
            for item in checkpoints:
                if item["pipeline"] in names:
                    self.assertIn(hostnames[ordinal], item.get("owner", ""), item)


if __name__ == "__main__":
    unittest.main()
