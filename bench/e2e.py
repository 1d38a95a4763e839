#!/usr/bin/env python3
"""Whole-process benchmark: sse-ingest side by side with other SSE clients, in one run.

A local server on 127.0.0.1 sends a pre-built buffer (so it is never the bottleneck) of
Wikimedia-shaped events of 1 KiB of data each, then closes the connection. Each client reads
the stream to its end and writes every event's data as one line to a file (or, for curl, the
raw stream to /dev/null: the wire's limit). Each client runs several times; the medians of
wall time, CPU time (user + system, from wait4) and peak RSS are printed, with events/s, CPU
seconds per million events and the ratios to LaunchDarkly's client.

    bench/e2e.py                      # the side-by-side table (RUNS=5, EVENTS=300000)
    bench/e2e.py --startup            # start-up to the first delivered event, cold and warm
    bench/e2e.py --soak 600           # RSS every 10 s over 600 s at --rate events/s
    bench/e2e.py --soak 600 --admin   # the same with the admin API on

It builds what it runs: `cargo build --release -p sse-ingest` and the peers in bench/peers
(a workspace of their own). Standard library only. Figures go into BENCHMARKS.md by hand,
with the command that produced them.
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SSE_INGEST = ROOT / "target/release/sse-ingest"
PEERS = ROOT / "bench/peers/target/release"
FIXTURE = ROOT / "tests/fixtures/wikimedia-recentchange-sample.ndjson"
DATA_BYTES = 1024
HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    b"Cache-Control: no-cache\r\nConnection: close\r\n\r\n"
)


def wikimedia_data():
    """The fixture's events, each padded (through its comment) to exactly DATA_BYTES."""
    shaped = []
    for line in FIXTURE.read_text().splitlines():
        event = json.loads(line)
        event["comment"] = ""
        base = len(json.dumps(event, separators=(",", ":")).encode())
        if base > DATA_BYTES:
            continue
        event["comment"] = "x" * (DATA_BYTES - base)
        text = json.dumps(event, separators=(",", ":")).encode()
        assert len(text) == DATA_BYTES, len(text)
        shaped.append(text)
    return shaped


def stream_body(events):
    """`events` frames as the live stream frames them: id (Kafka-style), event, data."""
    shaped = wikimedia_data()
    parts = []
    for n in range(events):
        parts.append(
            b'id: [{"topic":"eqiad.mediawiki.recentchange","partition":0,"offset":%d}]\n'
            b"event: message\ndata: %s\n\n" % (n, shaped[n % len(shaped)])
        )
    return b"".join(parts)


class Server:
    """Answers every connection with HEAD + body (optionally paced), then closes it."""

    def __init__(self, body, rate=None, events=1, repeat=1, chunk_events=50):
        self.body = memoryview(body)
        self.rate = rate
        self.total_events = events
        self.repeat = repeat
        self.chunk_events = chunk_events
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/v2/stream/recentchange"

    def _accept(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(connection,), daemon=True).start()

    def _answer(self, connection):
        with connection:
            request = b""
            while b"\r\n\r\n" not in request and len(request) < 65536:
                chunk = connection.recv(4096)
                if not chunk:
                    return
                request += chunk
            try:
                connection.sendall(HEAD)
                if self.rate is None:
                    connection.sendall(self.body)
                else:
                    self._paced(connection)
            except OSError:
                pass

    def _paced(self, connection):
        """The body `repeat` times, `chunk_events` events at a time, at `rate` events/s."""
        frame = len(self.body) // max(1, self.total_events)
        step = frame * self.chunk_events
        start = time.monotonic()
        n = 0
        for _ in range(self.repeat):
            for offset in range(0, len(self.body), step):
                due = start + n * self.chunk_events / self.rate
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                connection.sendall(self.body[offset : offset + step])
                n += 1

    def close(self):
        self.listener.close()


def build():
    subprocess.run(
        ["cargo", "build", "--release", "--locked", "-p", "sse-ingest"], cwd=ROOT, check=True
    )
    subprocess.run(["cargo", "build", "--release"], cwd=ROOT / "bench/peers", check=True)


def measure(argv, env=None, cwd=None, stdout=subprocess.DEVNULL):
    """Runs argv under GNU time; returns (wall s, cpu s, peak RSS MiB). GNU time, not this
    script's own wait4: a child forked from this process starts out with its pages (the
    stream's buffer), which would count in its peak RSS."""
    with tempfile.NamedTemporaryFile("r") as report:
        timed = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", report.name, *argv]
        process = subprocess.run(timed, env=env, cwd=cwd, stdout=stdout, stderr=subprocess.PIPE)
        if process.returncode != 0:
            sys.exit(f"{argv[0]} exited {process.returncode}: {process.stderr.decode()[-2000:]}")
        wall, user, system, rss_kib = report.read().split()[-4:]
    return float(wall), float(user) + float(system), int(rss_kib) / 1024


def count_lines(path):
    total = 0
    for file in Path(path).rglob("*"):
        if file.is_file() and (file.name.endswith(".ndjson") or file.name == "out.txt"):
            with open(file, "rb") as handle:
                total += sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    return total


def clients(url, work, cache):
    """name -> function(run index) -> argv, output dir (or None)."""

    def ingest(extra):
        def argv(run):
            out = work / f"out-{run}"
            state = work / f"state-{run}"
            return [
                str(SSE_INGEST), "run", "--once", "--url", url, "--state-dir", str(state),
                "--cache-dir", str(cache), "--sink", f"file:{out}", *extra,
            ], out
        return argv

    def discard(run):
        argv, _ = ingest([])(run)
        argv[argv.index("--sink") + 1] = "discard"
        return argv, None

    def peer(binary):
        def argv(run):
            out = work / f"out-{run}"
            out.mkdir(parents=True, exist_ok=True)
            return [str(PEERS / binary), url, str(out / "out.txt")], out
        return argv

    return {
        "curl (the wire, to /dev/null)": lambda run: (
            ["curl", "-sS", "-N", "-o", "/dev/null", url], None),
        "LaunchDarkly eventsource-client 0.18.0": peer("launchdarkly"),
        "reqwest + eventsource-stream": peer("reqwest-eventsource-stream"),
        "sse-ingest, passthrough, file sink": ingest([]),
        "sse-ingest, json-match, file sink": ingest(
            ["--filter", "json-match", "--filter-config", "where=/meta/domain exists"]),
        "sse-ingest, passthrough, discard sink": discard,
        # Swaps come over the admin API; with it on, the built-in filters are compiled beside
        # the pipeline once it runs, and stay in memory.
        "sse-ingest, passthrough, file sink, admin API on": ingest(["--admin", "127.0.0.1:0"]),
    }


def side_by_side(args):
    body = stream_body(args.events)
    server = Server(body)
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        cache = scratch / "component-cache"
        # Warm the compiled-component cache (both filters) before measuring.
        for name, argv_of in clients(server.url, scratch / "warm", cache).items():
            if name.startswith("sse-ingest"):
                argv, _ = argv_of(0)
                measure(argv)
        for run in range(args.runs):
            for name, argv_of in clients(server.url, scratch / f"run-{run}", cache).items():
                argv, out = argv_of(run)
                wall, cpu, rss = measure(argv)
                if out is not None:
                    lines = count_lines(out)
                    if lines != args.events:
                        sys.exit(f"{name} wrote {lines} lines, not {args.events}")
                    shutil.rmtree(out)
                results.setdefault(name, []).append((wall, cpu, rss))
    server.close()
    print(f"{args.events} events of {DATA_BYTES} B data ({len(body) / 1e6:.0f} MB on the wire), "
          f"median of {args.runs} runs, on {os.cpu_count()} cores")
    reference = statistics.median(w for w, _, _ in results["LaunchDarkly eventsource-client 0.18.0"])
    reference_cpu = statistics.median(c for _, c, _ in results["LaunchDarkly eventsource-client 0.18.0"])
    print(f"| client | wall s | events/s | throughput vs LaunchDarkly | CPU s per M events "
          f"| CPU vs LaunchDarkly | peak RSS MiB |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        wall = statistics.median(w for w, _, _ in runs)
        cpu = statistics.median(c for _, c, _ in runs)
        rss = statistics.median(r for _, _, r in runs)
        print(f"| {name} | {wall:.2f} ({min(w for w, _, _ in runs):.2f}–{max(w for w, _, _ in runs):.2f}) "
              f"| {args.events / wall:,.0f} | {reference / wall:.2f}× | {cpu / args.events * 1e6:.2f} "
              f"| {cpu / reference_cpu:.2f}× | {rss:.0f} |")


def first_line_after_start(argv, env):
    """Seconds from spawn to the first line on the child's stdout."""
    start = time.monotonic()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    process.stdout.readline()
    elapsed = time.monotonic() - start
    process.kill()
    process.wait()
    return elapsed


def startup(args):
    server = Server(stream_body(1000))
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        precompiled = scratch / "precompiled"
        subprocess.run([str(SSE_INGEST), "precompile", str(precompiled)], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        warm_cache = scratch / "warm-cache"
        for run in range(args.runs + 1):
            for kind in ("cold (empty cache)", "warm (cache filled)", "precompiled (image)"):
                env = dict(os.environ)
                cache = warm_cache if kind.startswith("warm") else scratch / f"cold-{kind[:4]}-{run}"
                if kind.startswith("precompiled"):
                    env["SSE_INGEST_PRECOMPILED_DIR"] = str(precompiled)
                argv = [str(SSE_INGEST), "run", "--url", server.url, "--sink", "stdout",
                        "--state-dir", str(scratch / f"state-{kind[:4]}-{run}"),
                        "--cache-dir", str(cache)]
                seconds = first_line_after_start(argv, env)
                if run > 0:  # the first round fills the warm cache
                    figures.setdefault(kind, []).append(seconds)
    server.close()
    print(f"start-up to the first delivered event (stdout sink), median of {args.runs}:")
    for kind, values in figures.items():
        print(f"| {kind} | {statistics.median(values) * 1000:.0f} ms "
              f"({min(values) * 1000:.0f}–{max(values) * 1000:.0f}) |")


def soak(args):
    # One second of events, sent over and over (ids repeat: within a connection that is data).
    events = int(args.rate)
    server = Server(stream_body(events), rate=args.rate, events=events,
                    repeat=int(args.soak) + 30)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        argv = [str(SSE_INGEST), "run", "--once", "--url", server.url,
                "--sink", f"file:{scratch / 'out'}", "--state-dir", str(scratch / "state")]
        if args.admin:
            argv += ["--admin", "127.0.0.1:0", "--cache-dir", str(scratch / "cache")]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        print(f"RSS of sse-ingest at {args.rate:,.0f} events/s (file sink), every 10 s:")
        start = time.monotonic()
        samples = []
        while time.monotonic() - start < args.soak and process.poll() is None:
            time.sleep(10)
            status = Path(f"/proc/{process.pid}/status").read_text()
            kib = {line.split(":")[0]: int(line.split()[1]) for line in status.splitlines()
                   if line.startswith(("VmRSS", "RssAnon", "RssFile"))}
            samples.append(kib["VmRSS"] / 1024)
            print(f"  {time.monotonic() - start:5.0f} s  {kib['VmRSS'] / 1024:6.1f} MiB"
                  f"  (anonymous {kib['RssAnon'] / 1024:.1f}, file-backed {kib['RssFile'] / 1024:.1f})",
                  flush=True)
        process.kill()
        process.wait()
    server.close()
    if samples:
        print(f"min {min(samples):.1f} MiB, max {max(samples):.1f} MiB, "
              f"last minus first {samples[-1] - samples[0]:+.1f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=int(os.environ.get("EVENTS", 300_000)))
    parser.add_argument("--runs", type=int, default=int(os.environ.get("RUNS", 5)))
    parser.add_argument("--startup", action="store_true", help="measure start-up instead")
    parser.add_argument("--soak", type=float, metavar="SECONDS", help="RSS over time instead")
    parser.add_argument("--rate", type=float, default=5000, help="events/s of --soak")
    parser.add_argument("--admin", action="store_true",
                        help="--soak with the admin API on (built-in filters compiled ahead)")
    parser.add_argument("--no-build", action="store_true", help="use the binaries as they are")
    args = parser.parse_args()
    if not args.no_build:
        build()
    if args.startup:
        startup(args)
    elif args.soak:
        soak(args)
    else:
        side_by_side(args)


if __name__ == "__main__":
    main()
