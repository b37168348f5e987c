"""Engine benchmarks on the memory store (issue 2 targets). Prints figures; not a test.

    .venv/bin/python bench/bench_engine.py

* Engine ``get`` of a pushed scalar: target >= 200,000 ops/s in one thread.
* Engine window ``apply_updates`` of 1,000-event batches: target >= 300,000 events/s.
* Engine ``get`` of a 30-day window at 1-minute granularity (fully populated) vs a 1-hour one.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from datetime import UTC, datetime

from raptor.api.assets import FeatureDef
from raptor.api.names import fqn_of
from raptor.api.primitives import Primitive
from raptor.api.timeutil import MINUTE, SECOND
from raptor.api.windows import AggrFn, WindowSpec
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import Engine, Update
from raptor.state.memory import MemoryStateStore

REPEATS = 5


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.t / SECOND, UTC)

    def now_micros(self) -> int:
        return self.t


def fdef(name: str, primitive: str, **kw: object) -> FeatureDef:
    base: dict[str, object] = {
        "fqn": fqn_of("default", name),
        "namespace": "default",
        "name": name,
        "primitive": Primitive.parse(primitive),
        "freshness": 60 * SECOND,
        "staleness": 3600 * SECOND,
        "timeout": 0,
        "keys": ("id",),
        "code": f"def handler(row, ctx) -> {'float' if primitive == 'float' else 'int'}:\n"
        "    return row['v']\n",
        "builder_kind": "push",
    }
    base.update(kw)
    return FeatureDef(**base)  # type: ignore[arg-type]


def windowed(name: str, over: int) -> FeatureDef:
    return fdef(
        name,
        "float",
        freshness=MINUTE,
        staleness=over,
        aggr=(AggrFn.SUM, AggrFn.COUNT, AggrFn.AVG),
        window=WindowSpec(MINUTE, over),
    )


async def main() -> None:
    now = 1_700_000_000 * SECOND
    clock = Clock(now)
    defs = [
        fdef("scalar", "int"),
        windowed("w30d", 30 * 24 * 60 * MINUTE),
        windowed("w1h", 60 * MINUTE),
    ]
    catalog = build_catalog(defs)
    assert not catalog.errors, catalog.errors
    engine = Engine(MemoryStateStore(), clock=clock, catalog=catalog)
    await engine.set("scalar", {"id": "a"}, 42)

    # 1. get of a pushed scalar
    n = 100_000
    rates = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for _ in range(n):
            await engine.get("scalar", {"id": "a"})
        rates.append(n / (time.perf_counter() - t0))
    print(f"engine get (pushed scalar, memory): median {statistics.median(rates):,.0f} ops/s")

    # 2. window adds through apply_updates, batches of 1,000
    rt = engine.catalog.features["default.w1h"]
    batches = []
    for b in range(100):
        batches.append(
            [
                Update(rt, {"id": f"e{i % 100}"}, float(i), now - (b * 1000 + i) * 1000)
                for i in range(1000)
            ]
        )
    rates = []
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        for batch in batches:
            await engine.apply_updates(batch)
        rates.append(100_000 / (time.perf_counter() - t0))
    print(
        f"engine window add (1,000-event batches): median {statistics.median(rates):,.0f} events/s"
    )

    # 3. window reads: 30 days at 1 minute, fully populated, vs 1 hour
    rt30 = engine.catalog.features["default.w30d"]
    minutes = 30 * 24 * 60
    await engine.apply_updates(
        [Update(rt30, {"id": "x"}, 1.0, now - i * MINUTE) for i in range(minutes)]
    )
    await engine.apply_updates(
        [
            Update(engine.catalog.features["default.w1h"], {"id": "x"}, 1.0, now - i * MINUTE)
            for i in range(60)
        ]
    )
    for sel, expected in (("w30d+count", minutes), ("w1h+count", 60)):
        lat = []
        for _ in range(REPEATS):
            k = 20_000
            t0 = time.perf_counter()
            for _ in range(k):
                v = await engine.get(sel, {"id": "x"})
            lat.append((time.perf_counter() - t0) / k * 1e6)
            assert v.value == expected, (sel, v.value)
        print(f"engine get {sel} (fully populated): median {statistics.median(lat):.1f} µs")
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
