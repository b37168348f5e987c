"""Benchmark of streaming ingestion. A script that prints figures, not a test.

    .venv/bin/python bench/bench_ingest.py            # full run (about a minute)
    .venv/bin/python bench/bench_ingest.py --quick    # smaller populations
    .venv/bin/python bench/bench_ingest.py --only redis --repeat 3   # one figure, 3 runs

One runner (:class:`raptor.runners.loop.StreamRunner`, exactly what ``raptor runner`` runs) in
this process, with its state in a private ``redis-server`` (another process, on the other core),
consuming a windowed feature — ``amount`` with ``sum``/``count``/``avg`` over 1 h in 1-minute
buckets — keyed by 1,000 users; events carry an RFC 3339 ``ts``. Every write is checkpointed
(exactly-once fences), as in production.

Figures:

* **Redis Streams → Redis state, backlog**: events/s to drain a pre-filled stream
  (target >= 50,000/s), CPU time of this process per 1,000 events, and the Redis server's
  (``INFO cpu``) over the same span. On a shared machine compare CPU per 1,000 events, not
  events/s, and interleave the runs of the versions compared.
* **end-to-end lag**: a producer process appends at a fixed rate while the runner consumes;
  lag = the time an event is written to state minus the time it was appended (from the stream
  id): p50 / p99 / max over every batch's oldest event.
* **Kafka (librdkafka mock cluster) → Redis state, backlog**: the same from a 4-partition topic.
* **profile**: where the CPU goes (cProfile, top functions by own time) on a Redis Streams run.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import multiprocessing
import os
import platform
import pstats
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

import redis

from raptor.api.loading import load_text
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import Engine
from raptor.runners.config import Secrets
from raptor.runners.loop import RunnerSettings, StreamRunner
from raptor.runners.process import tune_gc
from raptor.runners.source import Message
from raptor.state.redis import RedisStateStore
from servers import RedisServer

USERS = 1000

MANIFESTS = """\
apiVersion: k8s.raptor.ml/v1alpha1
kind: DataSource
metadata: {name: clicks, namespace: default}
spec:
  kind: streaming
  config:
%(config)s
  keyFields: [user]
  timestampField: ts
---
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata: {name: amount, namespace: default}
spec:
  primitive: int
  freshness: 1m
  staleness: 1h
  keys: [user]
  dataSource: {name: clicks}
  builder:
    aggr: [sum, count, avg]
    aggrGranularity: 1m
    code: |
      def handler(row, ctx) -> int:
          return row["amount"]
"""


def manifests(config: dict[str, str]) -> str:
    entries = "\n".join(f"    - {{name: {k}, value: {json.dumps(v)}}}" for k, v in config.items())
    return MANIFESTS % {"config": entries}


def event(i: int, ts: str) -> bytes:
    return json.dumps({"user": f"user{i % USERS}", "amount": i % 100, "ts": ts}).encode()


def fill_stream(url: str, stream: str, n: int) -> None:
    client = redis.Redis.from_url(url)
    ts = datetime.now(UTC).isoformat()
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(stream, {"data": event(i, ts)})
        if i % 2000 == 1999:
            pipe.execute()
    pipe.execute()
    client.close()


def make_runner(engine: Engine, config: dict[str, str], batch: int) -> StreamRunner:
    loaded = load_text(manifests(config))
    catalog = build_catalog(loaded.assets)
    assert not catalog.errors, catalog.errors
    engine.load(catalog)
    settings = RunnerSettings(
        consumer="bench", max_batch=batch, fetch_timeout=0.05, secrets=Secrets(secrets_dir=None)
    )
    return StreamRunner(engine, catalog.data_sources["default.clicks"], settings)


def redis_cpu(url: str) -> float:
    """CPU seconds the Redis server has used so far (``INFO cpu``)."""
    client = redis.Redis.from_url(url)
    info = client.info("cpu")
    client.close()
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def consume(
    runner: StreamRunner, n: int, lags: list[float] | None = None, url: str | None = None
) -> tuple[float, float, float]:
    """Run until ``n`` events are applied; (wall seconds, CPU seconds of this process, CPU
    seconds of the Redis server at ``url`` — 0 without one)."""
    commit = runner._commit

    async def timed(batch: list[Message], outcomes: Any, started: float) -> None:
        await commit(batch, outcomes, started)
        if lags is not None:
            oldest = min(m.broker_time for m in batch if m.broker_time is not None)
            lags.append(time.time() - oldest / 1e6)

    runner._commit = timed  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    while runner.metrics.applied == 0:  # noqa: ASYNC110 (polling a counter)
        await asyncio.sleep(0.001)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    rcpu0 = redis_cpu(url) if url else 0.0
    first = runner.metrics.applied
    while runner.metrics.applied < n:
        await asyncio.sleep(0.002)
        if task.done():
            task.result()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rcpu = redis_cpu(url) - rcpu0 if url else 0.0
    stop.set()
    await task
    # normalize to the events consumed inside the timed span
    scale = n / max(runner.metrics.applied - first, 1)
    return wall * scale, cpu * scale, rcpu * scale


async def check(engine: Engine, n: int) -> None:
    total = 0
    for u in range(0, USERS, 97):
        total += (await engine.get("amount+count", {"user": f"user{u}"})).value
    expected = sum(1 for i in range(n) if (i % USERS) % 97 == 0)
    assert total == expected, (total, expected)


def flush(url: str) -> None:
    """Start from empty state (and streams): each figure is measured on its own."""
    client = redis.Redis.from_url(url)
    client.flushall()
    client.close()


async def bench_redis(url: str, n: int, batch: int, profile: bool = False) -> dict[str, Any]:
    flush(url)
    stream = f"bench-{time.time_ns()}"
    fill_stream(url, stream, n)
    store = RedisStateStore.from_url(url)
    engine = Engine(store)
    runner = make_runner(engine, {"kind": "redis", "url": url, "stream": stream}, batch)
    prof = cProfile.Profile() if profile else None
    if prof is not None:
        prof.enable()
    wall, cpu, rcpu = await consume(runner, n, url=url)
    if prof is not None:
        prof.disable()
    await check(engine, n)
    await engine.aclose()
    await store.close()
    out: dict[str, Any] = {
        "events_per_s": n / wall,
        "cpu_ms_per_1000": cpu / n * 1e6,
        "redis_ms_per_1000": rcpu / n * 1e6,
    }
    if prof is not None:
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(18)
        out["profile"] = s.getvalue()
    return out


def _produce_at_rate(url: str, stream: str, rate: int, n: int) -> None:
    """Append ``n`` events at ``rate`` per second (100 pipelined appends a second)."""
    client = redis.Redis.from_url(url)
    ts = datetime.now(UTC).isoformat()
    chunk = max(1, rate // 100)
    start = time.monotonic()
    i = 0
    while i < n:
        pipe = client.pipeline(transaction=False)
        for _ in range(min(chunk, n - i)):
            pipe.xadd(stream, {"data": event(i, ts)})
            i += 1
        pipe.execute()
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    client.close()


async def bench_lag(url: str, rate: int, seconds: float) -> dict[str, float]:
    flush(url)
    stream = f"lag-{time.time_ns()}"
    n = int(rate * seconds)
    store = RedisStateStore.from_url(url)
    engine = Engine(store)
    runner = make_runner(engine, {"kind": "redis", "url": url, "stream": stream}, 5000)
    producer = multiprocessing.get_context("spawn").Process(
        target=_produce_at_rate, args=(url, stream, rate, n)
    )
    producer.start()
    lags: list[float] = []
    await consume(runner, n, lags)
    producer.join()
    await engine.aclose()
    await store.close()
    lags.sort()
    return {
        "rate": rate,
        "p50_ms": statistics.median(lags) * 1000,
        "p99_ms": lags[int(len(lags) * 0.99) - 1] * 1000,
        "max_ms": lags[-1] * 1000,
    }


async def bench_kafka(url: str, n: int, batch: int) -> dict[str, Any]:
    from brokers import KafkaMock
    from confluent_kafka import Producer

    flush(url)
    mock = KafkaMock()
    topic = "bench"
    mock.create_topic(topic, 4)
    producer = Producer({"bootstrap.servers": mock.bootstrap, "linger.ms": 20})
    ts = datetime.now(UTC).isoformat()
    for i in range(n):
        while True:
            try:
                producer.produce(topic, value=event(i, ts), partition=i % 4)
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    store = RedisStateStore.from_url(url)
    engine = Engine(store)
    config = {"kind": "kafka", "brokers": mock.bootstrap, "topics": topic, "consumer_group": "b"}
    runner = make_runner(engine, config, batch)
    wall, cpu, rcpu = await consume(runner, n, url=url)
    await check(engine, n)
    await engine.aclose()
    await store.close()
    mock.close()
    return {
        "events_per_s": n / wall,
        "cpu_ms_per_1000": cpu / n * 1e6,
        "redis_ms_per_1000": rcpu / n * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument(
        "--only", choices=("redis", "lag", "kafka", "profile"), action="append",
        help="run only these figures (repeatable); default all",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1, help="runs of each backlog figure")
    args = parser.parse_args()
    only = set(args.only or ("redis", "lag", "kafka", "profile"))
    tune_gc()  # as `raptor runner` does
    n = 60_000 if args.quick else 200_000
    print(f"# bench_ingest — {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d}")  # fmt: skip
    with RedisServer() as server:
        url = server.url
        for _ in range(args.repeat if "redis" in only else 0):
            r = asyncio.run(bench_redis(url, n, args.batch))
            print(f"redis streams -> redis state, backlog of {n:,}: {r['events_per_s']:,.0f} "
                  f"events/s, CPU {r['cpu_ms_per_1000']:.1f} ms / 1,000 events "
                  f"(redis-server {r['redis_ms_per_1000']:.1f} ms)", flush=True)  # fmt: skip
        for rate in (20_000, 40_000) if "lag" in only else ():
            lag = asyncio.run(bench_lag(url, rate, 3 if args.quick else 6))
            print(f"end-to-end lag at {rate:,} events/s: p50 {lag['p50_ms']:.0f} ms, "
                  f"p99 {lag['p99_ms']:.0f} ms, max {lag['max_ms']:.0f} ms")  # fmt: skip
        for _ in range(args.repeat if "kafka" in only else 0):
            k = asyncio.run(bench_kafka(url, n // 2, args.batch))
            print(f"kafka (mock cluster, 4 partitions) -> redis state, backlog of {n // 2:,}: "
                  f"{k['events_per_s']:,.0f} events/s, "
                  f"CPU {k['cpu_ms_per_1000']:.1f} ms / 1,000 events "
                  f"(redis-server {k['redis_ms_per_1000']:.1f} ms)", flush=True)  # fmt: skip
        if "profile" in only:
            p = asyncio.run(bench_redis(url, min(n, 60_000), args.batch, profile=True))
            print("\nprofile (redis streams, cProfile on; figures inflated by the profiler):")
            print(p["profile"])


if __name__ == "__main__":
    main()
