"""Benchmark of the in-memory state store's windows. A script that prints figures, not a test.

    .venv/bin/python bench/bench_state.py            # full run (about a minute)
    .venv/bin/python bench/bench_state.py --quick    # fewer repetitions, smaller populations

Figures (each the median of several repetitions):

* **add, batch 1,000**: events/s through ``MemoryStateStore.window_add`` with 1,000 in-order
  events per call (one entity per call, 20 entities in turn). Target >= 300,000 events/s.
* **add, one per call**: events/s with one event per ``window_add`` call.
* **add, steady**: one event per call into an already full 30-day window, time moving a minute
  per call, so every call also prunes (the long-running state of a busy entity).
* **read**: median latency of one ``await window_read`` of a fully populated window, for a
  30-day window at 1-minute granularity (43,200 fine buckets; target <= 50 µs) and a 1-hour one.
  "same minute" reads share the query-time bucket (production: every read within one
  granularity); "new minute" moves the query time to a new bucket on every read (worst case).
* **memory per entity**: tracemalloc growth per entity of a fully populated 1h/1min window.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable

from raptor.api.windows import WindowSpec
from raptor.state.memory import MemoryStateStore

MINUTE = 60_000_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
T0 = 1_717_200_000_000_000  # 2024-06-01T00:00:00Z
W1H = WindowSpec(granularity=MINUTE, over=HOUR)
W30D = WindowSpec(granularity=MINUTE, over=30 * DAY)


def median_of(reps: int, run: Callable[[], Awaitable[float]]) -> tuple[float, list[float]]:
    values = [asyncio.run(run()) for _ in range(reps)]
    return statistics.median(values), values


def add_batches(window: WindowSpec, batch: int, calls: int) -> Callable[[], Awaitable[float]]:
    """Events 1 s apart in event time, in order; ``now`` is the last event of each call."""
    entities = [f"user{i}" for i in range(20)]
    rng = random.Random(1)
    plan: list[tuple[str, list[tuple[int, int]], int]] = []
    clock = {e: T0 for e in entities}
    for i in range(calls):
        e = entities[i % len(entities)]
        t = clock[e]
        events = [(t + k * 1_000_000, rng.randrange(1, 1_000_000)) for k in range(batch)]
        clock[e] = t + batch * 1_000_000
        plan.append((e, events, events[-1][0]))

    async def run() -> float:
        store = MemoryStateStore()
        gc.collect()
        start = time.perf_counter()
        for entity, events, now in plan:
            await store.window_add("bench.clicks", entity, window, events, now)
        return calls * batch / (time.perf_counter() - start)

    return run


def add_steady(calls: int) -> Callable[[], Awaitable[float]]:
    """One event per call and per minute into a 30d/1min window that is already full: every
    call also prunes the bucket that just left the window (the long-running steady state)."""

    async def run() -> float:
        store = MemoryStateStore()
        minutes = 31 * 24 * 60
        events = [(T0 + m * MINUTE + 7, m) for m in range(minutes)]
        for i in range(0, minutes, 1000):
            chunk = events[i : i + 1000]
            await store.window_add("bench.clicks", "u", W30D, chunk, chunk[-1][0])
        plan = [T0 + (minutes + k) * MINUTE + 7 for k in range(calls)]
        start = time.perf_counter()
        for t in plan:
            await store.window_add("bench.clicks", "u", W30D, [(t, 1)], t)
        return calls / (time.perf_counter() - start)

    return run


def read_latency(
    window: WindowSpec, populate: int, reads: int, move: bool
) -> Callable[[], Awaitable[float]]:
    """Median µs of one read; one event per minute for ``populate`` minutes before reading."""

    async def run() -> float:
        store = MemoryStateStore()
        rng = random.Random(2)
        end = T0 + populate * MINUTE
        events = [(T0 + m * MINUTE + 7, rng.randrange(1, 1000)) for m in range(populate)]
        for i in range(0, len(events), 1000):
            chunk = events[i : i + 1000]
            await store.window_add("bench.clicks", "u", window, chunk, chunk[-1][0])
        ats = [end + (i * MINUTE if move else i) for i in range(reads)]
        samples: list[int] = []
        clock = time.perf_counter_ns
        read = store.window_read
        for at in ats:
            t = clock()
            await read("bench.clicks", "u", window, at)
            samples.append(clock() - t)
        return statistics.median(samples) / 1000

    return run


async def memory_per_entity(entities: int, value: Callable[[random.Random], object]) -> float:
    store = MemoryStateStore()
    rng = random.Random(3)
    plan = [
        (f"user{i}", [(T0 + m * MINUTE + 7, value(rng)) for m in range(60)])
        for i in range(entities)
    ]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for entity, events in plan:
        await store.window_add("bench.clicks", entity, W1H, events, events[-1][0])
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / entities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    reps = 3 if args.quick else 7
    scale = 4 if args.quick else 1

    print(f"python {sys.version.split()[0]} on {platform.machine()} {platform.processor() or ''}")
    print(f"median of {reps} repetitions\n")

    rows: list[tuple[str, str, str]] = []

    def report(label: str, value: float, unit: str, runs: list[float], fmt: str) -> None:
        spread = f"[{format(min(runs), fmt)} .. {format(max(runs), fmt)}]"
        rows.append((label, f"{format(value, fmt)} {unit}", spread))
        print(f"{label:<44} {format(value, fmt):>12} {unit:<9} {spread}", flush=True)

    for name, window in (("1h/1min", W1H), ("30d/1min", W30D)):
        med, runs = median_of(reps, add_batches(window, 1000, 400 // scale))
        report(f"add {name}, batch 1,000", med, "events/s", runs, ",.0f")
        med, runs = median_of(reps, add_batches(window, 1, 100_000 // scale))
        report(f"add {name}, one event per call", med, "events/s", runs, ",.0f")

    med, runs = median_of(reps, add_steady(20_000 // scale))
    report("add 30d/1min full, one per minute (steady)", med, "events/s", runs, ",.0f")

    days31 = 31 * 24 * 60
    for name, window, populate in (("30d/1min", W30D, days31), ("1h/1min", W1H, 120)):
        for move in (False, True):
            label = f"read {name}, {'new' if move else 'same'} minute"
            med, runs = median_of(reps, read_latency(window, populate, 5000 // scale, move))
            report(label, med, "µs", runs, ".2f")

    for label, value in (
        ("memory per entity 1h/1min, int values", lambda r: r.randrange(1000, 10**6)),
        ("memory per entity 1h/1min, float values", lambda r: r.random() * 1000),
    ):
        runs = [asyncio.run(memory_per_entity(2000 // scale, value)) for _ in range(3)]
        report(label, statistics.median(runs), "bytes", runs, ",.0f")


if __name__ == "__main__":
    main()
