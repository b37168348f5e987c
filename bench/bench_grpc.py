"""gRPC accessor throughput: ``EngineService.Get`` (or ``BatchGet``) against one server process.

    .venv/bin/python bench/bench_grpc.py [--duration 10] [--concurrency 32] [--method get]

The server runs in a subprocess (one process, memory state, a pushed float feature with a value
for ``--entities`` entities, plus a windowed feature). One client process drives it with
``--concurrency`` in-flight ``grpc.aio`` calls on one channel for ``--duration`` seconds (after a
``--warmup``), then prints requests per second, latency percentiles and the server's CPU time per
request (from ``/proc``). ``--profile FILE`` runs the server under cProfile and writes its stats
(inspect with ``python -m pstats FILE``). Issue 3's target: gRPC Get >= 4,000 req/s.

``--floor`` serves the same RPCs from a bare ``grpc.aio`` server that answers every ``Get`` with
an empty ``GetResponse`` (no engine): the framework's own ceiling on this machine, to tell how
much of the cost per request is Raptor's.

``--method batch`` sends ``BatchGet`` of ``--batch-entities`` entities x the feature's 5
selectors (cells per second = req/s x cells).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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


async def serve(port: int, entities: int) -> None:
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
    main = serve_floor(args.port) if args.floor else serve(args.port, args.entities)
    run = asyncio.run
    if args.uvloop:
        import uvloop  # optional: pip install uvloop

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
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(args: argparse.Namespace, pid: int) -> None:
    import grpc

    from raptor.api.proto.core.v1alpha1 import api_pb2, api_pb2_grpc

    channel = grpc.aio.insecure_channel(f"127.0.0.1:{args.port}")
    stub = api_pb2_grpc.EngineServiceStub(channel)
    rng = random.Random(1)
    if args.method == "get":
        requests = [
            api_pb2.GetRequest(selector="amount", keys={"user": f"u{rng.randrange(args.entities)}"})
            for _ in range(1024)
        ]
        call = stub.Get
    else:
        requests = [
            api_pb2.BatchGetRequest(
                selectors=BATCH_SELECTORS,
                entities=[
                    api_pb2.EntityKeys(keys={"user": f"u{rng.randrange(args.entities)}"})
                    for _ in range(args.batch_entities)
                ],
            )
            for _ in range(64)
        ]
        call = stub.BatchGet

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
    cpu0, ccpu0 = cpu_seconds(pid), time.process_time()
    t0 = time.perf_counter()
    deadline = t0 + args.duration
    await asyncio.gather(*(worker(w * 7) for w in range(args.concurrency)))
    elapsed = time.perf_counter() - t0
    server_cpu, client_cpu = cpu_seconds(pid) - cpu0, time.process_time() - ccpu0
    await channel.close()

    n = len(latencies)
    if n == 0:
        print(f"no successful requests ({errors} errors)")
        return
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(n - 1, int(p / 100 * n))] * 1000

    if args.method == "get":
        what = "Get"
    else:
        what = f"BatchGet {args.batch_entities} entities x {len(BATCH_SELECTORS)} selectors"
    server = "bare grpc.aio server (floor)" if args.floor else "raptor, memory state"
    if args.uvloop:
        server += ", uvloop"
    print(
        f"gRPC {what} [{server}]: concurrency {args.concurrency}, {args.duration:.0f} s, "
        f"{args.entities} entities"
    )
    print(f"  {n} ok, {errors} errors -> {n / elapsed:,.0f} req/s")
    print(
        f"  latency ms: p50 {pct(50):.2f}  p90 {pct(90):.2f}  p99 {pct(99):.2f}  max {pct(100):.2f}"
    )
    print(
        f"  server CPU {server_cpu / n * 1e6:.0f} us/req ({server_cpu / elapsed:.0%} of a core); "
        f"client CPU {client_cpu / n * 1e6:.0f} us/req ({client_cpu / elapsed:.0%})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--method", choices=("get", "batch"), default="get")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--entities", type=int, default=10_000)
    ap.add_argument("--batch-entities", type=int, default=100)
    ap.add_argument("--profile", help="write the server's cProfile stats to this file")
    ap.add_argument("--floor", action="store_true", help="bare grpc.aio server (no engine)")
    ap.add_argument("--uvloop", action="store_true", help="run the server on uvloop")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        run_server(args)
        return

    args.port = free_port()
    cmd = [
        sys.executable,
        __file__,
        "--serve",
        "--port",
        str(args.port),
        "--entities",
        str(args.entities),
    ]
    if args.profile:
        cmd += ["--profile", args.profile]
    if args.floor:
        cmd.append("--floor")
    if args.uvloop:
        cmd.append("--uvloop")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "READY":
            raise SystemExit(f"server did not start (exit code {proc.wait()})")
        asyncio.run(drive(args, proc.pid))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
