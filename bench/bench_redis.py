"""Benchmark of the Redis state store against a private redis-server it starts itself.

Run:  .venv/bin/python bench/bench_redis.py [--quick]

Prints medians of several rounds (targets from issue 4 in brackets):

* read of 5 features × 1 entity through ``read_batch`` (p50, ≤ 0.2 ms), next to a raw
  redis-py + hiredis ``HMGET`` round trip measured in the same run;
* ``read_batch`` of 100 entities × 5 features (p50, ≤ 2 ms);
* window adds in pipelined ``apply`` batches (events/s from one process, ≥ 100,000);
* a 30-day / 1-minute window read against a 1-hour one (latency ratio, ≤ 2×);
* memory per entity of a 1 h / 1 min windowed feature (bytes, INFO memory and MEMORY USAGE).

Engine-level reads are measured elsewhere; this is the store alone.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis
import redis.asyncio as aredis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from raptor.api.windows import WindowSpec
from raptor.state import (
    ValueRead,
    ValueWrite,
    WindowAdd,
    WindowRead,
    WriteOp,
    WritePolicy,
)
from raptor.state.redis import RedisStateStore
from servers import RedisServer

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
DAY = 24 * HOUR
NOW = 1_717_200_000_000_000
W1H = WindowSpec(granularity=MINUTE, over=HOUR)
W30D = WindowSpec(granularity=MINUTE, over=30 * DAY)
FEATURES = [f"bench.f{i}" for i in range(5)]


async def p50(call: Callable[[], Awaitable[Any]], n: int, warmup: int = 200) -> float:
    """Median latency of ``call`` in milliseconds."""
    for _ in range(warmup):
        await call()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1000


def median_of(rounds: list[float]) -> str:
    return f"{statistics.median(rounds):.3f}"


async def run(url: str, port: int, rounds: int, n: int) -> None:
    store = RedisStateStore.from_url(url)
    raw = aredis.Redis(host="127.0.0.1", port=port)
    sync = redis.Redis(host="127.0.0.1", port=port)
    policy = WritePolicy(staleness=DAY)
    writes = [
        (f, f"u{e}", WriteOp.SET, 1000 + e, NOW, policy) for f in FEATURES for e in range(1000)
    ]
    for i in range(0, len(writes), 1000):
        await store.apply([ValueWrite(*w) for w in writes[i : i + 1000]], NOW)

    one = [ValueRead(f, "u1") for f in FEATURES]
    hundred = [ValueRead(f, f"u{e}") for e in range(100) for f in FEATURES]
    sync.hset("bench:raw", mapping={"0": b"x" * 30, "1": b"y" * 30})
    r_raw, r_one, r_hundred = [], [], []
    for _ in range(rounds):
        r_raw.append(await p50(lambda: raw.execute_command("HMGET", "bench:raw", "0"), n))
        r_one.append(await p50(lambda: store.read_batch(one, NOW), n))
        r_hundred.append(await p50(lambda: store.read_batch(hundred, NOW), max(n // 10, 100)))
    print(f"raw redis-py HMGET round trip       p50 {median_of(r_raw)} ms")
    print(f"read_batch 1 entity x 5 features    p50 {median_of(r_one)} ms   [<= 0.2 ms]")
    print(f"read_batch 100 entities x 5 features p50 {median_of(r_hundred)} ms   [<= 2 ms]")

    # -- window adds: pipelined batches ------------------------------------------------------
    async def adds_per_second(shape: str, make: Callable[[int], list[WindowAdd]]) -> None:
        rates = []
        for r in range(rounds):
            batches = [make(r * 100 + b) for b in range(8)]
            events = sum(len(a.events) for batch in batches for a in batch)
            start = time.perf_counter()
            for i in range(0, len(batches), inflight):  # `inflight` pipelines at a time
                await asyncio.gather(*(store.apply(b, NOW) for b in batches[i : i + inflight]))
            rates.append(events / (time.perf_counter() - start))
        print(f"window_add {shape:<46} {statistics.median(rates):>9,.0f} events/s  [>= 100,000]")

    rng = random.Random(7)
    for inflight in (1, 4):
        await adds_per_second(
            f"2000 entities x 1 event, {inflight} in flight",
            lambda b: [WindowAdd("bench.a", f"e{b}-{i}", W1H, [(NOW, i)]) for i in range(2000)],
        )
        await adds_per_second(
            f"500 entities x 10 events, {inflight} in flight",
            lambda b: [
                WindowAdd("bench.b", f"e{b}-{i}", W1H, [(NOW - k * SECOND, k) for k in range(10)])
                for i in range(500)
            ],
        )
        await adds_per_second(
            f"5000 events of 1000 skewed entities, {inflight} in flight",
            lambda b: [
                WindowAdd("bench.c", f"e{int(rng.paretovariate(1.2)) % 1000}", W1H, [(NOW, i)])
                for i in range(5000)
            ],
        )

    # -- long window vs short window reads ---------------------------------------------------
    events = [(NOW - k * MINUTE + 1, k % 100) for k in range(30 * 24 * 60)]
    for i in range(0, len(events), 5000):
        await store.window_add("bench.long", "u", W30D, events[i : i + 5000], NOW)
    await store.window_add("bench.short", "u", W1H, events[:60], NOW)
    r_long, r_short = [], []
    for _ in range(rounds):
        r_short.append(await p50(lambda: store.window_read("bench.short", "u", W1H, NOW), n))
        r_long.append(await p50(lambda: store.window_read("bench.long", "u", W30D, NOW), n))
    ratio = statistics.median(r_long) / statistics.median(r_short)
    print(f"window_read 1 h / 1 min             p50 {median_of(r_short)} ms")
    print(f"window_read 30 d / 1 min            p50 {median_of(r_long)} ms")
    print(f"30 d / 1 h latency ratio            {ratio:.2f}x   [<= 2x]")
    wr = [WindowRead("bench.short", "u", W1H), *one]
    mixed = await p50(lambda: store.read_batch(wr, NOW), n)
    print(f"read_batch 1 window + 5 values      p50 {mixed:.3f} ms")

    # -- memory per entity of a 1 h / 1 min window -------------------------------------------
    sync.flushall()
    await asyncio.sleep(0.1)
    entities = 2000
    before = int(sync.info("memory")["used_memory"])
    hour = [(NOW - k * MINUTE, 1000 + k) for k in range(60)]
    for i in range(0, entities, 200):
        await store.apply(
            [WindowAdd("bench.mem", f"user{e:06d}", W1H, hour) for e in range(i, i + 200)], NOW
        )
    after = int(sync.info("memory")["used_memory"])
    hkey, _ = store.window_keys("bench.mem", "user000001", W1H)
    usage = sync.memory_usage(hkey)
    per_entity = (after - before) / entities
    print(f"memory per entity, 1 h / 1 min      {per_entity:,.0f} B (INFO used_memory)")
    print(f"MEMORY USAGE of one bucket hash     {usage} B ({sync.hlen(hkey)} fields)")

    await raw.aclose()
    sync.close()
    await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and samples")
    args = parser.parse_args()
    rounds, n = (3, 500) if args.quick else (5, 3000)
    with RedisServer() as server:
        print(f"redis-server on 127.0.0.1:{server.port}; {rounds} rounds, medians")
        asyncio.run(run(server.url, server.port, rounds, n))


if __name__ == "__main__":
    main()
