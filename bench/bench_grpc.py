"""gRPC accessor throughput: ``EngineService.Get`` (or ``BatchGet``) against one server process.

    .venv/bin/python bench/bench_grpc.py                     # h2load client, uvloop server
    .venv/bin/python bench/bench_grpc.py --repeat 3 --with-floor
    .venv/bin/python bench/bench_grpc.py --client python     # one grpc.aio client process
    .venv/bin/python bench/bench_grpc.py --loop asyncio      # server on the stock loop

The server runs in a subprocess, as ``raptor up`` runs it: one process, ``grpc.aio`` on uvloop
(``--loop asyncio`` to compare), memory state, a pushed float feature with a value for
``--entities`` entities plus a windowed feature. The client drives it with ``--concurrency``
calls in flight on one HTTP/2 connection for ``--duration`` seconds (after a ``--warmup``)
and the script prints requests per second, latency and the server's CPU time per request
(from ``/proc``). Issue 3's target: gRPC Get >= 4,000 req/s with a concurrent async client.

Clients (``--client``):

* ``h2load`` (default when installed; Debian ``nghttp2-client``): nghttp2's C load generator
  posting a pre-built gRPC frame (``content-type: application/grpc``, ``te: trailers``) for one
  entity — a concurrent async client that leaves the second core to the server. h2load does
  not read ``grpc-status``, so the script first makes the same call with grpcio and checks the
  answer, and afterwards checks that every response carried a message of the expected size
  (an error answer has no message): a mismatch is reported as errors.
* ``python``: one ``grpc.aio`` client process cycling over 1,024 random entities. On a 2-core
  machine it costs ~250 µs of CPU per call itself, so it measures the client as much as the
  server.

The server tunes its garbage collector as ``raptor up`` does (``--gc default`` to compare).
``--with-floor`` alternates each run with a bare ``grpc.aio`` server that answers every call
with an empty message (no engine; ``--floor`` runs only that): the framework's own ceiling on
this machine, to tell how much of the cost per request is Raptor's. ``--repeat N`` runs N
rounds and prints medians. ``--profile FILE`` runs the server under cProfile (inspect with
``python -m pstats FILE``).

``--method batch`` sends ``BatchGet`` of ``--batch-entities`` entities x the feature's 5
selectors (cells per second = req/s x cells).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MANIFESTS = """
apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {name: events, namespace: default}
spec: {kind: push, keyFields: [user], timestampField: ts}
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: amount, namespace: default}
spec:
  primitive: float
  freshness: 24h
  staleness: 48h
  keys: [user]
  dataSource: {name: events}
  builder:
    code: |
      def handler(row, ctx) -> float:
          return row["amount"]
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: spend, namespace: default}
spec:
  primitive: float
  freshness: 1m
  staleness: 1h
  keys: [user]
  dataSource: {name: events}
  builder:
    aggrGranularity: 1m
    aggr: [sum, count, min, max, avg]
    code: |
      def handler(row, ctx) -> float:
          return row["amount"]
"""

BATCH_SELECTORS = ["amount", "spend+sum", "spend+count", "spend+max", "spend+avg"]


# -- server (subprocess) -----------------------------------------------------------------------


async def serve(port: int, entities: int, tune_gc: bool) -> None:
    from raptor.api.loading import load_text
    from raptor.engine.catalog import build_catalog
    from raptor.engine.engine import Engine
    from raptor.server.grpc import create_grpc_server
    from raptor.state.memory import MemoryStateStore

    loaded = load_text(MANIFESTS)
    catalog = build_catalog(loaded.assets)
    if loaded.errors or catalog.errors:
        raise SystemExit(f"bad bench manifests: {loaded.errors} {catalog.errors}")
    engine = Engine(MemoryStateStore(), catalog=catalog)
    if tune_gc:
        from raptor.cli.up import _tune_gc

        _tune_gc()  # what `raptor up` does once its assets are loaded
    for i in range(entities):
        await engine.set("amount", {"user": f"u{i}"}, float(i))
        await engine.update("spend", {"user": f"u{i}"}, float(i % 100))
    server = create_grpc_server(engine, f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await server.stop(None)
    await engine.aclose()


async def serve_floor(port: int) -> None:
    """A bare grpc.aio server with the generated registration and an empty Get: the floor."""
    import grpc

    from raptor.api.proto.core.v1alpha1 import api_pb2, api_pb2_grpc

    class Empty:
        async def Get(self, request: object, context: object) -> object:
            return api_pb2.GetResponse()

        async def BatchGet(self, request: object, context: object) -> object:
            return api_pb2.BatchGetResponse()

        def __getattr__(self, name: str) -> object:
            return None

    server = grpc.aio.server()
    api_pb2_grpc.add_EngineServiceServicer_to_server(Empty(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    await stop.wait()
    await server.stop(None)


def run_server(args: argparse.Namespace) -> None:
    main = (
        serve_floor(args.port) if args.floor else serve(args.port, args.entities, args.gc == "up")
    )
    run = asyncio.run
    if args.loop == "uvloop":
        import uvloop  # the server extra brings it; `raptor up` runs on it

        run = uvloop.run
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        try:
            run(main)
        finally:
            prof.disable()
            prof.dump_stats(args.profile)
    else:
        run(main)


# -- client ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Result:
    """One measured run: completed calls, errors, elapsed seconds, latencies (s), CPU (s)."""

    def __init__(
        self, ok: int, errors: int, elapsed: float, latencies: list[float], server_cpu: float
    ) -> None:
        self.ok, self.errors, self.elapsed = ok, errors, elapsed
        self.latencies = sorted(latencies)
        self.server_cpu = server_cpu

    @property
    def rate(self) -> float:
        return self.ok / self.elapsed if self.elapsed else 0.0

    def pct(self, p: float) -> float:
        """The ``p``-th percentile latency in ms (0 without samples)."""
        n = len(self.latencies)
        return self.latencies[min(n - 1, int(p / 100 * n))] * 1000 if n else 0.0

    @property
    def cpu_per_req_us(self) -> float:
        return self.server_cpu / self.ok * 1e6 if self.ok else 0.0


def build_requests(args: argparse.Namespace) -> list[Any]:
    from raptor.api.proto.core.v1alpha1 import api_pb2

    rng = random.Random(1)
    if args.method == "get":
        return [
            api_pb2.GetRequest(selector="amount", keys={"user": f"u{rng.randrange(args.entities)}"})
            for _ in range(1024)
        ]
    return [
        api_pb2.BatchGetRequest(
            selectors=BATCH_SELECTORS,
            entities=[
                api_pb2.EntityKeys(keys={"user": f"u{rng.randrange(args.entities)}"})
                for _ in range(args.batch_entities)
            ],
        )
        for _ in range(64)
    ]


async def drive_python(args: argparse.Namespace, port: int, pid: int) -> Result:
    """``--concurrency`` grpc.aio calls in flight on one channel."""
    import grpc

    from raptor.api.proto.core.v1alpha1 import api_pb2_grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    stub = api_pb2_grpc.EngineServiceStub(channel)
    requests = build_requests(args)
    call = stub.Get if args.method == "get" else stub.BatchGet
    latencies: list[float] = []
    errors = 0
    measuring = False
    deadline = 0.0

    async def worker(offset: int) -> None:
        nonlocal errors
        i = offset
        while time.perf_counter() < deadline:
            req = requests[i % len(requests)]
            i += 1
            t0 = time.perf_counter()
            try:
                await call(req)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if measuring:
                latencies.append(time.perf_counter() - t0)

    # Warm-up (connection, caches), then measure.
    deadline = time.perf_counter() + args.warmup
    await asyncio.gather(*(worker(w * 7) for w in range(args.concurrency)))
    measuring = True
    cpu0 = cpu_seconds(pid)
    t0 = time.perf_counter()
    deadline = t0 + args.duration
    await asyncio.gather(*(worker(w * 7) for w in range(args.concurrency)))
    elapsed = time.perf_counter() - t0
    server_cpu = cpu_seconds(pid) - cpu0
    await channel.close()
    return Result(len(latencies), errors, elapsed, latencies, server_cpu)


def grpc_frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message (uncompressed)."""
    return struct.pack(">BI", 0, len(message)) + message


def expected_reply_size(args: argparse.Namespace, port: int, request: Any, floor: bool) -> int:
    """Make the call once with grpcio, check it succeeds, return its framed reply's size."""
    import grpc

    from raptor.api.proto.core.v1alpha1 import api_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = api_pb2_grpc.EngineServiceStub(channel)
        reply = (stub.Get if args.method == "get" else stub.BatchGet)(request, timeout=10)
    if not floor and args.method == "get" and not reply.value.HasField("value"):
        raise SystemExit(f"the checked Get returned no value: {reply}")
    # Every reply carries a fresh 36-character UUID: same size, different bytes.
    return 5 + len(reply.SerializeToString())


def drive_h2load(args: argparse.Namespace, port: int, pid: int, floor: bool) -> Result:
    """nghttp2's ``h2load``: one connection, ``--concurrency`` streams, a fixed gRPC request."""
    request = build_requests(args)[0]
    reply_size = expected_reply_size(args, port, request, floor)
    rpc = "Get" if args.method == "get" else "BatchGet"
    with tempfile.TemporaryDirectory() as tmp:
        body = Path(tmp) / "request.grpc"
        body.write_bytes(grpc_frame(request.SerializeToString()))
        log = Path(tmp) / "requests.tsv"
        base = [
            "h2load",
            "-c1",
            f"-m{args.concurrency}",
            "-d",
            str(body),
            "-H",
            "content-type: application/grpc",
            "-H",
            "te: trailers",
        ]
        url = f"http://127.0.0.1:{port}/core.v1alpha1.EngineService/{rpc}"
        subprocess.run(
            [*base, f"-D{args.warmup:g}", url], check=True, stdout=subprocess.DEVNULL
        )  # warm-up
        cpu0 = cpu_seconds(pid)
        out = subprocess.run(
            [*base, f"-D{args.duration:g}", "--log-file", str(log), url],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        server_cpu = cpu_seconds(pid) - cpu0
        latencies = [
            int(line.split("\t")[2]) / 1e6 for line in log.read_text().splitlines() if line
        ]
    finished = re.search(r"finished in ([\d.]+)s", out)
    succeeded = re.search(r"(\d+) succeeded", out)
    data = re.search(r"\((\d+)\) data", out)
    if not (finished and succeeded and data):
        raise SystemExit(f"could not read h2load's output:\n{out}")
    ok = int(succeeded.group(1))
    data_bytes = int(data.group(1))
    # Each successful reply is one message of reply_size bytes (an error has none). A Get
    # reply's size is fixed; a BatchGet cell of a window carries the read time, whose
    # nanoseconds take 1-5 bytes, so its replies vary by up to 4 bytes a cell.
    slack = 0 if args.method == "get" else 4 * len(BATCH_SELECTORS) * args.batch_entities
    good = ok if data_bytes >= ok * (reply_size - slack) else data_bytes // (reply_size + slack)
    if good < ok:
        print(f"  note: {data_bytes} response bytes for {ok} calls of ~{reply_size} bytes each")
    return Result(good, ok - good, float(finished.group(1)), latencies[:good], server_cpu)


def start_server(args: argparse.Namespace, floor: bool) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    cmd = [
        sys.executable,
        __file__,
        "--serve",
        "--port",
        str(port),
        "--entities",
        str(args.entities),
        "--loop",
        args.loop,
        "--gc",
        args.gc,
    ]
    if args.profile:
        cmd += ["--profile", args.profile]
    if floor:
        cmd.append("--floor")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if line.strip() != "READY":
        raise SystemExit(f"server did not start (exit code {proc.wait()})")
    return proc, port


def stop_server(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def one_run(args: argparse.Namespace, floor: bool) -> Result:
    proc, port = start_server(args, floor)
    try:
        if args.client == "h2load":
            return drive_h2load(args, port, proc.pid, floor)
        return asyncio.run(drive_python(args, port, proc.pid))
    finally:
        stop_server(proc)


def report(label: str, r: Result) -> None:
    print(
        f"  {label:<34} {r.rate:>8,.0f} req/s  p50 {r.pct(50):6.2f} ms  p99 {r.pct(99):6.2f} ms  "
        f"server CPU {r.cpu_per_req_us:5.0f} us/req  ({r.ok} ok, {r.errors} errors)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--method", choices=("get", "batch"), default="get")
    ap.add_argument("--client", choices=("h2load", "python"), default=None)
    ap.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    ap.add_argument(
        "--gc", choices=("up", "default"), default="up", help="raptor up's GC tuning, or none"
    )
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--batch-entities", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=1, help="rounds; medians are printed")
    ap.add_argument("--profile", help="write the server's cProfile stats to this file")
    ap.add_argument("--floor", action="store_true", help="only the bare grpc.aio server")
    ap.add_argument("--with-floor", action="store_true", help="alternate with the bare server")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        run_server(args)
        return
    if args.client is None:
        args.client = "h2load" if shutil.which("h2load") else "python"
        if args.client == "python":
            print("h2load not found (Debian: nghttp2-client): using the Python client")

    what = "Get" if args.method == "get" else f"BatchGet {args.batch_entities} x 5"
    print(
        f"gRPC {what}: {args.client} client, concurrency {args.concurrency}, "
        f"{args.duration:.0f} s per run, server on {args.loop}, {args.entities} entities",
        flush=True,
    )
    kinds = [True] if args.floor else ([False, True] if args.with_floor else [False])
    results: dict[bool, list[Result]] = {k: [] for k in kinds}
    for round_ in range(args.repeat):
        for floor in kinds:
            r = one_run(args, floor)
            results[floor].append(r)
            report(f"round {round_ + 1}: {'bare grpc.aio' if floor else 'raptor'}", r)
    if args.repeat > 1 or len(kinds) > 1:
        print("medians:")
        for floor, rs in results.items():
            med = Result(0, 0, 1.0, [], 0.0)
            med.ok = int(statistics.median(r.rate for r in rs))
            cpu = statistics.median(r.cpu_per_req_us for r in rs)
            p50 = statistics.median(r.pct(50) for r in rs)
            p99 = statistics.median(r.pct(99) for r in rs)
            print(
                f"  {'bare grpc.aio server (floor)' if floor else 'raptor, memory state':<34} "
                f"{med.ok:>8,} req/s  p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  "
                f"server CPU {cpu:5.0f} us/req"
            )
        if len(kinds) == 2:
            ratio = statistics.median(r.rate for r in results[False]) / statistics.median(
                r.rate for r in results[True]
            )
            print(f"  raptor / floor throughput: {ratio:.2f}")


if __name__ == "__main__":
    main()
