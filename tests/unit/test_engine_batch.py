"""The batch read path is the one-by-one read, cell for cell.

``Engine.get_columns`` (and ``get_many`` on top of it) reads a whole batch in one state call and
decides each column in one loop; ``MemoryStateStore.read_columns`` reads a column in one loop;
the REST batchGet encodes columns without a record per cell. Each is checked here against the
path it replaces, on random catalogs, writes, times and entities (Hypothesis):

* every cell equals what ``Engine.get`` returns for it on an identical engine (value, timestamp,
  freshness, computed features computed, per-cell errors with the same message);
* the memory store's column fast path equals the generic reshaping of ``read_batch`` (same
  values, copies of lists, window sums added in the same order: equal to the last bit);
* a store without the fast path (as Redis) gives the same batch through ``read_batch``;
* the batchGet response body is byte for byte the document the per-cell encoding produced, and
  the feature counters count the same hits, stale reads, misses and errors.

One thing is out of scope by design (as before the column path): a batch reads stored values
once, up front, so a computed feature with ``keepPrevious`` asked for as ``f`` and ``f@-1`` in
one batch shows ``f@-1`` as it was before ``f`` was recomputed. Computed features here keep no
versions.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raptor.api.assets import FeatureDef, KeepPrevious, ModelDef
from raptor.api.names import fqn_of, parse_selector
from raptor.api.primitives import Primitive
from raptor.api.timeutil import SECOND, from_micros, to_micros
from raptor.api.windows import AggrFn, Partial, WindowSpec
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import BatchColumn, Engine
from raptor.engine.pipeline import FeatureValue, GetHandler, GetRequest
from raptor.errors import MissingKeyError, RaptorError
from raptor.server.errors import error_document
from raptor.server.metrics import ERROR, HIT, MISS, STALE
from raptor.server.rest import create_app
from raptor.server.wire import dumps, entity_keys_list, format_micros, format_stamps
from raptor.state import (
    ColumnRead,
    Stamped,
    StateStore,
    ValueColumn,
    ValueColumnRead,
    ValueRead,
    ValueWrite,
    WindowAdd,
    WindowColumnRead,
    WindowRead,
    WriteOp,
    WritePolicy,
    read_columns,
    read_columns_via_batch,
)
from raptor.state.memory import MemoryStateStore
from raptor.testing import FakeClock

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

SETTINGS = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- random catalogs, writes and batches -------------------------------------------------------

SCALARS: dict[str, Any] = {
    "int": st.integers(-1000, 1000),
    "float": st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
    "string": st.text(max_size=4),
    "bool": st.booleans(),
}
ANNOTATION = {
    "int": "int",
    "float": "float",
    "string": "str",
    "bool": "bool",
    "[]int": "list[int]",
    "[]string": "list[str]",
}
COMPUTED_CODE = (
    "def handler(row, ctx) -> int:\n"
    "    ident = ctx.keys.get('id', '')\n"
    "    return None if ident == 'b' else len(ident) * 10 + len(ctx.keys)\n"
)
IDS = ["a", "b", "c", "1", "x/y", "é", "A9"]


@dataclass(frozen=True)
class Spec:
    name: str
    primitive: str
    kind: str  # push | sourceless
    freshness: int  # seconds
    staleness: int  # seconds, 0 = never stale
    keys: tuple[str, ...]
    aggr: tuple[str, ...] = ()
    granularity: int = 0
    versions: int = 0
    version_over: int = 0

    def defn(self) -> FeatureDef:
        window = None
        freshness = self.freshness
        if self.aggr:
            window = WindowSpec(self.granularity * SECOND, self.staleness * SECOND)
            freshness = self.granularity
        return FeatureDef(
            fqn=fqn_of("default", self.name),
            namespace="default",
            name=self.name,
            primitive=Primitive.parse(self.primitive),
            freshness=freshness * SECOND,
            staleness=self.staleness * SECOND,
            timeout=0,
            keys=self.keys,
            code=(
                COMPUTED_CODE
                if self.kind == "sourceless"
                else f"def handler(row, ctx) -> {ANNOTATION[self.primitive]}:\n    return None\n"
            ),
            builder_kind=self.kind,
            aggr=tuple(AggrFn.parse(a) for a in self.aggr),
            window=window,
            keep_previous=(
                KeepPrevious(self.versions, self.version_over * SECOND) if self.versions else None
            ),
        )

    def selectors(self) -> list[str]:
        if self.aggr:
            return [f"{self.name}+{fn}" for fn in self.aggr]
        return [self.name] + [f"{self.name}@-{v}" for v in range(1, self.versions + 1)]


@st.composite
def specs(draw: st.DrawFn, name: str) -> Spec:
    keys = draw(st.sampled_from([("id",), ("id",), ("id", "region")]))
    kind = draw(st.sampled_from(["push", "push", "push", "sourceless"]))
    # Small whole seconds, so reads land exactly on the freshness and staleness boundaries.
    freshness = draw(st.integers(1, 12))
    staleness = draw(st.one_of(st.just(0), st.integers(freshness, 30)))
    if kind == "sourceless":
        return Spec(name, "int", kind, freshness, staleness, keys)
    if draw(st.integers(0, 3)) == 0:  # windowed
        primitive = draw(st.sampled_from(["int", "float"]))
        granularity = draw(st.integers(1, 10))
        over = draw(st.integers(granularity, 200))
        fns = draw(
            st.lists(
                st.sampled_from(["sum", "count", "min", "max", "avg"]),
                min_size=1,
                max_size=3,
                unique=True,
            )
        )
        return Spec(name, primitive, kind, granularity, over, keys, tuple(fns), granularity)
    primitive = draw(st.sampled_from(["int", "float", "string", "bool", "[]int", "[]string"]))
    versions = draw(st.integers(0, 2))
    return Spec(
        name,
        primitive,
        kind,
        freshness,
        staleness,
        keys,
        versions=versions,
        version_over=draw(st.integers(1, 100)) if versions else 0,
    )


@dataclass(frozen=True)
class Write:
    feature: int
    keys: dict[str, str]
    value: Any
    back: int  # event time = now - back seconds
    advance: int  # clock moves this many seconds after the write


@dataclass(frozen=True)
class Scenario:
    specs: list[Spec]
    writes: list[Write]
    wait: int
    selectors: list[str]
    entities: list[dict[str, str]]


def entity_strategy() -> st.SearchStrategy[dict[str, str]]:
    """Mostly complete keys (whole columns take the fast path), sometimes a key missing."""
    ident = st.sampled_from(IDS)
    return st.one_of(
        st.fixed_dictionaries({"id": ident, "region": st.just("eu")}),
        st.fixed_dictionaries({"id": ident, "region": st.just("eu")}),
        st.fixed_dictionaries({"id": ident}),
        st.fixed_dictionaries({}, optional={"id": ident, "region": st.sampled_from(["eu", "us"])}),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    n = draw(st.integers(1, 4))
    feats = [draw(specs(f"f{i}")) for i in range(n)]
    writes = []
    for _ in range(draw(st.integers(0, 25))):
        i = draw(st.integers(0, n - 1))
        spec = feats[i]
        if spec.kind == "sourceless":
            continue
        if spec.aggr:
            value = draw(SCALARS[spec.primitive])
        elif spec.primitive.startswith("[]"):
            value = draw(SCALARS[spec.primitive[2:]])
        else:
            value = draw(SCALARS[spec.primitive])
        keys = {"id": draw(st.sampled_from(IDS[:4])), "region": "eu"}
        writes.append(Write(i, keys, value, draw(st.integers(0, 12)), draw(st.integers(0, 8))))
    every = [s for spec in feats for s in spec.selectors()]
    selectors = draw(st.lists(st.sampled_from(every), min_size=1, max_size=6, unique=True))
    entities = draw(st.lists(entity_strategy(), max_size=6))
    return Scenario(feats, writes, draw(st.integers(0, 40)), selectors, entities)


async def build(s: Scenario, clock: FakeClock, store: StateStore | None = None) -> Engine:
    catalog = build_catalog([spec.defn() for spec in s.specs])
    assert not catalog.errors, catalog.errors
    engine = Engine(store or MemoryStateStore(), clock=clock, catalog=catalog)
    for w in s.writes:
        spec = s.specs[w.feature]
        when = clock.now() - timedelta(seconds=w.back)
        if spec.aggr:
            await engine.update(spec.name, w.keys, w.value, when)
        elif spec.primitive.startswith("[]"):
            await engine.append(spec.name, w.keys, w.value, when)
        else:
            await engine.set(spec.name, w.keys, w.value, when)
        clock.advance(w.advance)
    clock.advance(s.wait)
    return engine


async def one_by_one(
    engine: Engine, selectors: Sequence[str], entities: Sequence[Mapping[str, str]]
) -> list[list[FeatureValue | RaptorError]]:
    """The reference: ``Engine.get`` of every cell, entity by entity."""
    rows: list[list[FeatureValue | RaptorError]] = []
    for keys in entities:
        row: list[FeatureValue | RaptorError] = []
        for sel in selectors:
            try:
                row.append(await engine.get(sel, keys))
            except RaptorError as exc:
                row.append(exc)
        rows.append(row)
    return rows


def same_error(a: object, b: object) -> bool:
    return type(a) is type(b) and str(a) == str(b)


def assert_cells_equal(
    got: list[list[FeatureValue | RaptorError]], want: list[list[FeatureValue | RaptorError]]
) -> None:
    assert len(got) == len(want)
    for got_row, want_row in zip(got, want, strict=True):
        assert len(got_row) == len(want_row)
        for g, w in zip(got_row, want_row, strict=True):
            if isinstance(w, RaptorError):
                assert same_error(g, w), (g, w)
            else:
                assert g == w
                assert type(g.value) is type(w.value)


def columns_as_cells(
    columns: list[BatchColumn], entities: Sequence[Mapping[str, str]]
) -> list[list[FeatureValue | RaptorError]]:
    rows: list[list[FeatureValue | RaptorError]] = [[] for _ in entities]
    for col in columns:
        for r, keys in enumerate(entities):
            exc = col.errors.get(r)
            if exc is not None:
                rows[r].append(exc)
                continue
            ts = col.timestamps[r]
            rows[r].append(
                FeatureValue(
                    col.fqn,
                    col.selector.text,
                    keys,
                    col.values[r],
                    None if ts is None else from_micros(ts),
                    col.fresh[r],
                )
            )
    return rows


class BatchlessStore:
    """A store with only the StateStore Protocol (no column fast path), as Redis is."""

    def __init__(self) -> None:
        self.inner = MemoryStateStore()
        self.read_batch_calls = 0

    async def read(self, fqn: str, entity: str, versions: int, now: int) -> list[Stamped | None]:
        return await self.inner.read(fqn, entity, versions, now)

    async def write(
        self,
        fqn: str,
        entity: str,
        op: WriteOp,
        value: Any,
        timestamp: int,
        policy: WritePolicy,
        now: int,
    ) -> Stamped | None:
        return await self.inner.write(fqn, entity, op, value, timestamp, policy, now)

    async def window_add(
        self,
        fqn: str,
        entity: str,
        window: WindowSpec,
        events: Sequence[tuple[int, Any]],
        now: int,
    ) -> int:
        return await self.inner.window_add(fqn, entity, window, events, now)

    async def window_read(self, fqn: str, entity: str, window: WindowSpec, at: int) -> Partial:
        return await self.inner.window_read(fqn, entity, window, at)

    async def read_batch(
        self, reads: Sequence[ValueRead | WindowRead], now: int
    ) -> list[list[Stamped | None] | Partial]:
        self.read_batch_calls += 1
        return await self.inner.read_batch(reads, now)

    async def apply(
        self, mutations: Sequence[ValueWrite | WindowAdd], now: int
    ) -> list[Stamped | int | None]:
        return await self.inner.apply(mutations, now)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


# -- the engine --------------------------------------------------------------------------------


async def _engine_batches_equal_gets(s: Scenario) -> None:
    engines = [await build(s, FakeClock(T0)) for _ in range(3)]
    reference, by_columns, by_rows = engines
    try:
        want = await one_by_one(reference, s.selectors, s.entities)
        columns = await by_columns.get_columns(s.selectors, s.entities)
        rows = await by_rows.get_many(s.selectors, s.entities)
    finally:
        for e in engines:
            await e.aclose()
    assert [c.selector.text for c in columns] == [str(parse_selector(x)) for x in s.selectors]
    assert_cells_equal(columns_as_cells(columns, s.entities), want)
    assert_cells_equal(rows, want)


@SETTINGS
@given(scenarios())
def test_every_batch_cell_is_what_get_returns_for_it(s: Scenario) -> None:
    asyncio.run(_engine_batches_equal_gets(s))


async def _store_without_fast_path_gives_the_same_batch(s: Scenario) -> None:
    batchless = BatchlessStore()
    fast, slow = await build(s, FakeClock(T0)), await build(s, FakeClock(T0), batchless)
    try:
        want = await fast.get_many(s.selectors, s.entities)
        calls = batchless.read_batch_calls
        got = await slow.get_many(s.selectors, s.entities)
        assert batchless.read_batch_calls <= calls + 1  # the whole batch in one read_batch
    finally:
        await fast.aclose()
        await slow.aclose()
    assert_cells_equal(got, want)


@SETTINGS
@given(scenarios())
def test_a_store_without_the_column_fast_path_gives_the_same_batch(s: Scenario) -> None:
    asyncio.run(_store_without_fast_path_gives_the_same_batch(s))


async def test_a_batch_keeps_per_cell_errors_and_computes_what_needs_computing() -> None:
    clock = FakeClock(T0)
    specs_ = [
        Spec("p", "int", "push", 10, 60, ("id",), versions=1, version_over=60),
        Spec("w", "float", "push", 5, 60, ("id",), ("sum", "count"), 5),
        Spec("c", "int", "sourceless", 10, 60, ("id",)),
        Spec("two", "string", "push", 10, 60, ("id", "region")),
    ]
    s = Scenario(specs_, [], 0, [], [])
    engine = await build(s, clock)
    await engine.set("p", {"id": "a"}, 1)
    await engine.set("p", {"id": "a"}, 2)
    await engine.update("w", {"id": "a"}, 1.5)
    await engine.update("w", {"id": "a"}, 2.0)
    clock.advance(20)  # p is stale now (usable), w's events are still in the window
    entities = [{"id": "a"}, {"id": "abc"}, {"region": "eu"}]
    columns = await engine.get_columns(["p", "p@-1", "w+sum", "w+count", "c", "two"], entities)
    await engine.aclose()

    p, p1, wsum, wcount, c, two = columns
    assert (p.values, p.fresh) == ([2, None, None], [False, False, False])
    assert p.timestamps[0] == to_micros(T0)
    assert p1.values[0] == 1
    assert wsum.values[:2] == [3.5, 0]
    assert wcount.values[:2] == [2, 0]
    assert wsum.fresh[:2] == [True, True]
    assert c.values[:2] == [11, 31]  # computed on request
    assert c.fresh[:2] == [True, True]
    for col in (p, p1, wsum, wcount, c):
        assert list(col.errors) == [2]
        assert isinstance(col.errors[2], MissingKeyError)
        assert col.fqn in str(col.errors[2])
    assert sorted(two.errors) == [0, 1, 2]


@pytest.mark.parametrize("with_absent_cell", [False, True])  # whole-column path, cell loop
@pytest.mark.parametrize("after", [10 * SECOND, 10 * SECOND + 1, 60 * SECOND, 60 * SECOND + 1])
async def test_freshness_and_staleness_boundaries_are_those_of_get(
    with_absent_cell: bool, after: int
) -> None:
    clock = FakeClock(T0)
    s = Scenario([Spec("p", "int", "push", 10, 60, ("id",))], [], 0, [], [])
    batch, single = await build(s, clock), await build(s, clock)
    for engine in (batch, single):
        await engine.set("p", {"id": "a"}, 1)
    clock.advance(micros=after)
    entities = [{"id": "a"}, {"id": "none"}] if with_absent_cell else [{"id": "a"}]

    (col,) = await batch.get_columns(["p"], entities)
    want = await single.get("p", {"id": "a"})

    assert (col.values[0], col.fresh[0]) == (want.value, want.fresh)
    assert (want.value, want.fresh) == {
        10 * SECOND: (1, True),
        10 * SECOND + 1: (1, False),
        60 * SECOND: (1, False),
        60 * SECOND + 1: (None, False),
    }[after]


async def test_a_model_in_a_batch_fails_cell_by_cell_as_get_does() -> None:
    model = ModelDef(
        fqn=fqn_of("default", "churn"),
        namespace="default",
        name="churn",
        freshness=SECOND,
        staleness=SECOND,
        timeout=0,
        features=(parse_selector("p"),),
        key_feature=parse_selector("p"),
    )
    clock = FakeClock(T0)
    catalog = build_catalog([Spec("p", "int", "push", 10, 60, ("id",)).defn(), model])
    engine = Engine(MemoryStateStore(), clock=clock, catalog=catalog)
    await engine.set("p", {"id": "a"}, 3)
    entities = [{"id": "a"}, {"id": "b"}]

    columns = await engine.get_columns(["p", "churn"], entities)
    want = await one_by_one(engine, ["p", "churn"], entities)
    await engine.aclose()

    assert_cells_equal(columns_as_cells(columns, entities), want)
    assert sorted(columns[1].errors) == [0, 1]


async def test_with_get_middlewares_every_cell_goes_through_them() -> None:
    seen: list[tuple[str, str]] = []

    async def spy(req: GetRequest, call_next: GetHandler) -> FeatureValue:
        seen.append((str(req.selector), req.entity))
        return await call_next(req)

    clock = FakeClock(T0)
    s = Scenario([Spec("p", "int", "push", 10, 60, ("id",))], [], 0, [], [])
    catalog = build_catalog([spec.defn() for spec in s.specs])
    engine = Engine(MemoryStateStore(), clock=clock, catalog=catalog, get_middlewares=[spy])
    await engine.set("p", {"id": "a"}, 7)
    columns = await engine.get_columns(["p"], [{"id": "a"}, {"id": "b"}])
    await engine.aclose()

    assert columns[0].values == [7, None]
    assert seen == [("default.p", "a"), ("default.p", "b")]


# -- the memory store's column fast path -------------------------------------------------------


@st.composite
def store_histories(draw: st.DrawFn) -> tuple[list[tuple[str, Any]], list[ColumnRead], int]:
    window = draw(
        st.sampled_from(
            [WindowSpec(SECOND, 10 * SECOND), WindowSpec(SECOND, 300 * SECOND, grace=SECOND)]
        )
    )
    entities = ["a", "b", "c", "d"]
    policy = WritePolicy(
        staleness=draw(st.sampled_from([0, 20 * SECOND])),
        versions=draw(st.integers(0, 2)),
        version_ttl=draw(st.sampled_from([0, 15 * SECOND])),
    )
    now = 1_000_000 * SECOND
    ops: list[tuple[str, Any]] = []
    for _ in range(draw(st.integers(0, 40))):
        now += draw(st.integers(0, 5 * SECOND))
        entity = draw(st.sampled_from(entities))
        t = now - draw(st.integers(-3 * SECOND, 40 * SECOND))  # some in the future
        if draw(st.booleans()):
            value = draw(st.one_of(st.integers(-5, 5), st.lists(st.integers(0, 3), max_size=2)))
            ops.append(("write", (ValueWrite("s.v", entity, WriteOp.SET, value, t, policy), now)))
        else:
            x = draw(st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False))
            ops.append(("window", (WindowAdd("s.w", entity, window, [(t, x)]), now)))
    at = now + draw(st.integers(0, 30 * SECOND))
    asked = draw(st.lists(st.sampled_from([*entities, "nobody"]), max_size=6))
    reads: list[ColumnRead] = [ValueColumnRead("s.v", asked, v) for v in range(policy.versions + 1)]
    reads.append(WindowColumnRead("s.w", asked, window))
    return ops, reads, at


async def _fast_columns_equal_read_batch(
    history: tuple[list[tuple[str, Any]], list[ColumnRead], int],
) -> None:
    ops, reads, at = history
    store = MemoryStateStore()
    for _, (mutation, now) in ops:
        await store.apply([mutation], now)
    want = await read_columns_via_batch(store, reads, at)
    got = await read_columns(store, reads, at)
    assert got == want
    for g, w in zip(got, want, strict=True):
        if isinstance(g, ValueColumn):
            assert isinstance(w, ValueColumn)
            for gv, wv in zip(g.values, w.values, strict=True):
                assert type(gv) is type(wv)
                if isinstance(gv, list):
                    assert gv is not wv  # copies out, never the stored list
        else:
            for gp, wp in zip(g, w, strict=True):
                # float sums added in the same order: equal to the last bit, same type
                assert [type(x) for x in gp] == [type(x) for x in wp]
                assert all(
                    (math.copysign(1, x) == math.copysign(1, y))
                    for x, y in zip(gp, wp, strict=True)
                    if isinstance(x, float) and isinstance(y, float)
                )


@SETTINGS
@given(store_histories())
def test_memory_column_reads_equal_read_batch_reshaped(
    history: tuple[list[tuple[str, Any]], list[ColumnRead], int],
) -> None:
    asyncio.run(_fast_columns_equal_read_batch(history))


async def test_a_dense_window_column_sums_buckets_in_cover_order() -> None:
    window = WindowSpec(SECOND, 3600 * SECOND)  # two levels: probed and scanned per level
    store = MemoryStateStore()
    now = 10_000 * SECOND
    events = [(now - i * 7 * SECOND, 0.1 * (i % 7) + 1e-9 * i) for i in range(400)]
    await store.window_add("s.w", "dense", window, events, now)
    await store.window_add("s.w", "sparse", window, events[:2], now)

    got = await store.read_columns([WindowColumnRead("s.w", ["dense", "sparse"], window)], now)

    assert got == [
        [
            await store.window_read("s.w", "dense", window, now),
            await store.window_read("s.w", "sparse", window, now),
        ]
    ]


# -- REST batchGet -----------------------------------------------------------------------------


def legacy_body(
    selectors: list[str],
    entities: list[dict[str, str]],
    rows: list[list[FeatureValue | RaptorError]],
) -> bytes:
    """The batchGet body as the per-cell encoding wrote it (a dict and a datetime per cell)."""
    results = []
    for keys, row in zip(entities, rows, strict=True):
        values: dict[str, Any] = {}
        for name, cell in zip(selectors, row, strict=True):
            if isinstance(cell, FeatureValue):
                values[name] = {
                    "value": cell.value,
                    "timestamp": cell.timestamp,
                    "fresh": cell.fresh,
                }
            else:
                values[name] = error_document(cell)[1]
        results.append({"keys": keys, "values": values})
    return dumps({"selectors": selectors, "results": results})


async def _rest_batch_equals_per_cell_encoding(s: Scenario) -> None:
    reference, served = await build(s, FakeClock(T0)), await build(s, FakeClock(T0))
    app = create_app(served)
    normalized = list(dict.fromkeys(str(parse_selector(x)) for x in s.selectors))
    try:
        want_rows = await one_by_one(reference, normalized, s.entities)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://raptor") as client:
            r = await client.post(
                "/api/v1alpha1/features:batchGet",
                json={"selectors": s.selectors, "entities": s.entities},
            )
    finally:
        await reference.aclose()
        await served.aclose()

    assert r.status_code == 200
    assert r.content == legacy_body(normalized, s.entities, want_rows)
    want_counts: dict[str, list[int]] = {}
    for row in want_rows:
        for name, cell in zip(normalized, row, strict=True):
            c = want_counts.setdefault(parse_selector(name).fqn, [0] * 5)
            if isinstance(cell, RaptorError):
                c[ERROR] += 1
            else:
                c[MISS if cell.value is None else HIT if cell.fresh else STALE] += 1
    metrics = app.api.metrics
    assert metrics is not None
    assert {fqn: list(metrics.feature(fqn)) for fqn in want_counts} == want_counts


@SETTINGS
@given(scenarios())
def test_the_batch_get_body_is_the_per_cell_encoding_byte_for_byte(s: Scenario) -> None:
    asyncio.run(_rest_batch_equals_per_cell_encoding(s))


@given(st.integers(-(2**52) + 1, 2**52 - 1))
def test_timestamps_are_formatted_as_orjson_writes_the_datetime(micros: int) -> None:
    want = orjson.dumps(from_micros(micros), option=orjson.OPT_UTC_Z)[1:-1].decode()

    assert format_micros(micros) == want
    assert format_stamps([micros, None, micros]) == [want, None, want]


def test_entity_keys_of_a_batch_accept_integers_and_name_a_bad_entity() -> None:
    plain = {"id": "a"}

    keys = entity_keys_list([plain, {"id": 7}, None], "entities")

    assert keys == [{"id": "a"}, {"id": "7"}, {}]
    with pytest.raises(RaptorError, match=r"entities\[1\]\.id"):
        entity_keys_list([plain, {"id": 1.5}], "entities")
    with pytest.raises(RaptorError, match=r"entities\[0\]"):
        entity_keys_list(["x"], "entities")
