"""The Engine facade: SPEC 4.2 freshness/staleness/timeout, 4.3 windows, 4.4 writes."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from raptor.api.assets import FeatureDef, KeepPrevious, ModelDef
from raptor.api.names import fqn_of, parse_selector
from raptor.api.primitives import Primitive
from raptor.api.timeutil import SECOND
from raptor.api.windows import AggrFn, WindowSpec
from raptor.engine.catalog import FeatureRuntime, build_catalog
from raptor.engine.engine import Engine
from raptor.engine.pipeline import FeatureValue, GetHandler, GetRequest
from raptor.engine.programs import ProgramResult
from raptor.errors import (
    FeatureTimeout,
    InvalidArgument,
    MissingKeyError,
    NotFound,
    NotReady,
    ReadOnlyError,
    SelectorError,
    ValueTypeError,
)
from raptor.state.memory import MemoryStateStore
from raptor.testing import FakeClock

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def feature(
    name: str,
    primitive: str = "int",
    *,
    code: str | None = None,
    freshness: float = 10,
    staleness: float = 60,
    timeout: float = 0,
    keys: tuple[str, ...] = ("id",),
    kind: str | None = None,
    aggr: tuple[str, ...] = (),
    granularity: float | None = None,
    keep: tuple[int, float] | None = None,
) -> FeatureDef:
    prim = Primitive.parse(primitive)
    annotation = {
        "int": "int",
        "float": "float",
        "string": "str",
        "bool": "bool",
        "[]string": "list[str]",
        "[]int": "list[int]",
    }[primitive]
    if code is None:
        code = f"def handler(row, ctx) -> {annotation}:\n    return None\n"
    window = None
    fns = tuple(AggrFn.parse(a) for a in aggr)
    if fns:
        g = int((granularity or freshness) * SECOND)
        window = WindowSpec(g, int(staleness * SECOND))
        freshness = g / SECOND
    return FeatureDef(
        fqn=fqn_of("default", name),
        namespace="default",
        name=name,
        primitive=prim,
        freshness=int(freshness * SECOND),
        staleness=int(staleness * SECOND),
        timeout=int(timeout * SECOND),
        keys=keys,
        code=code,
        builder_kind=kind,
        aggr=fns,
        window=window,
        keep_previous=KeepPrevious(keep[0], int(keep[1] * SECOND)) if keep else None,
    )


class Controlled:
    """A computer whose computations block until released; counts calls."""

    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.value: Any = 1

    async def compute(
        self, engine: Engine, feature: FeatureRuntime, keys: Mapping[str, str], now: int
    ) -> ProgramResult | None:
        self.calls += 1
        await self.release.wait()
        return ProgramResult(self.value, None, None)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


def make_engine(clock: FakeClock, *assets: Any, **kw: Any) -> Engine:
    catalog = build_catalog(assets)
    assert not catalog.errors, catalog.errors
    return Engine(MemoryStateStore(), clock=clock, catalog=catalog, **kw)


# -- pushed values -----------------------------------------------------------------------------


async def test_pushed_value_is_fresh_then_stale_then_gone(clock: FakeClock) -> None:
    engine = make_engine(clock, feature("f", kind="push"))
    await engine.set("f", {"id": "a"}, 5)
    v = await engine.get("f", {"id": "a"})
    assert (v.value, v.fresh, v.timestamp) == (5, True, T0)
    clock.advance(11)
    v = await engine.get("f", {"id": "a"})
    assert (v.value, v.fresh) == (5, False)
    clock.advance(50)
    v = await engine.get("f", {"id": "a"})
    assert (v.value, v.fresh, v.timestamp) == (None, False, None)


async def test_pushed_feature_is_never_computed(clock: FakeClock) -> None:
    computer = Controlled()
    engine = make_engine(clock, feature("f", kind="push"), computers={"push": computer})
    v = await engine.get("f", {"id": "a"})
    assert v.value is None
    assert computer.calls == 0


# -- computed values ---------------------------------------------------------------------------


async def test_computed_value_is_stored_and_reused_while_fresh(clock: FakeClock) -> None:
    computer = Controlled()
    computer.release.set()
    engine = make_engine(clock, feature("f"), computers={"sourceless": computer})
    assert (await engine.get("f", {"id": "a"})).value == 1
    computer.value = 2
    clock.advance(5)
    v = await engine.get("f", {"id": "a"})
    assert (v.value, v.fresh) == (1, True)
    assert computer.calls == 1
    clock.advance(6)
    assert (await engine.get("f", {"id": "a"})).value == 2
    assert computer.calls == 2


async def test_timeout_serves_stale_and_completes_in_background(clock: FakeClock) -> None:
    computer = Controlled()
    engine = make_engine(clock, feature("f", timeout=0.05), computers={"sourceless": computer})
    computer.release.set()
    await engine.get("f", {"id": "a"})
    computer.release.clear()
    computer.value = 7
    clock.advance(20)  # stale but usable
    v = await engine.get("f", {"id": "a"})
    assert (v.value, v.fresh) == (1, False)
    computer.release.set()
    for _ in range(50):
        await asyncio.sleep(0.01)
        if not engine._inflight:
            break
    v = await engine.get("f", {"id": "a"})
    assert (v.value, v.fresh) == (7, True)
    assert computer.calls == 2


async def test_timeout_with_nothing_usable_is_an_error(clock: FakeClock) -> None:
    computer = Controlled()
    engine = make_engine(clock, feature("f", timeout=0.02), computers={"sourceless": computer})
    with pytest.raises(FeatureTimeout, match=r"default\.f"):
        await engine.get("f", {"id": "a"})
    await engine.aclose()


async def test_one_computation_per_feature_and_keys(clock: FakeClock) -> None:
    computer = Controlled()
    engine = make_engine(clock, feature("f"), computers={"sourceless": computer})
    tasks = [asyncio.create_task(engine.get("f", {"id": "a"})) for _ in range(10)]
    other = asyncio.create_task(engine.get("f", {"id": "b"}))
    await asyncio.sleep(0.01)
    assert computer.calls == 2  # one for a, one for b
    computer.release.set()
    values = await asyncio.gather(*tasks, other)
    assert {v.value for v in values} == {1}
    assert computer.calls == 2


async def test_derived_feature_reads_other_features(clock: FakeClock) -> None:
    code = (
        "def handler(row, ctx) -> int:\n"
        "    v, ts = ctx.get_feature('base')\n"
        "    w, _ = ctx.get_feature('default.missing_one')\n"
        "    return (v or 0) * 2 + (0 if w is None else 100)\n"
    )
    engine = make_engine(
        clock,
        feature("base", kind="push"),
        feature("double", code=code),
        feature("missing-one", kind="push"),
    )
    await engine.set("base", {"id": "a"}, 21)
    v = await engine.get("double", {"id": "a"})
    assert v.value == 42
    assert v.fresh
    await engine.aclose()


async def test_program_reads_ctx_keys_and_time(clock: FakeClock) -> None:
    code = (
        "def handler(row, ctx) -> str:\n    return ctx.keys['id'] + '@' + str(ctx.timestamp.hour)\n"
    )
    engine = make_engine(clock, feature("hello", "string", code=code))
    assert (await engine.get("hello", {"id": "x", "other": "y"})).value == "x@12"
    await engine.aclose()


# -- windows -----------------------------------------------------------------------------------


async def test_windowed_feature_aggregates_by_event_time(clock: FakeClock) -> None:
    spend = feature(
        "spend", "float", aggr=("sum", "count", "min", "max", "avg"), freshness=60, staleness=600
    )
    engine = make_engine(clock, spend)
    keys = {"id": "c1"}
    for seconds, amount in ((-30, 10.0), (-700, 99.0), (-200, 5), (-10, 1.5)):
        await engine.update("spend", keys, amount, T0 + timedelta(seconds=seconds))
    got = {
        fn: (await engine.get(f"spend+{fn}", keys)).value
        for fn in ("sum", "count", "min", "max", "avg", "mean")
    }
    assert got == {
        "sum": 16.5,
        "count": 3,
        "min": 1.5,
        "max": 10.0,
        "avg": pytest.approx(5.5),
        "mean": pytest.approx(5.5),
    }
    v = await engine.get("spend+sum", keys)
    assert (v.fresh, v.timestamp, v.selector) == (True, T0, "default.spend+sum")


async def test_window_selector_must_name_a_function_when_several(clock: FakeClock) -> None:
    engine = make_engine(
        clock,
        feature("two", aggr=("sum", "count")),
        feature("one", aggr=("count",)),
        feature("plain", kind="push"),
    )
    with pytest.raises(SelectorError, match=r"two\+sum"):
        await engine.get("two", {"id": "a"})
    await engine.update("one", {"id": "a"}, 3)
    assert (await engine.get("one", {"id": "a"})).value == 1
    with pytest.raises(SelectorError, match="not an aggregation"):
        await engine.get("plain+sum", {"id": "a"})
    with pytest.raises(SelectorError, match=r"\+max"):
        await engine.get("two+max", {"id": "a"})


async def test_empty_window_gives_zero_count_and_null_min(clock: FakeClock) -> None:
    engine = make_engine(clock, feature("w", aggr=("sum", "count", "min", "avg")))
    values = [
        (await engine.get(f"w+{fn}", {"id": "a"})).value for fn in ("sum", "count", "min", "avg")
    ]
    assert values == [0, 0, None, None]


async def test_count_only_window_on_strings(clock: FakeClock) -> None:
    engine = make_engine(clock, feature("clicks", "string", aggr=("count",)))
    for page in ("a", "b", "c"):
        await engine.update("clicks", {"id": "u"}, page)
    assert (await engine.get("clicks+count", {"id": "u"})).value == 3
    with pytest.raises(ValueTypeError):
        await engine.update("clicks", {"id": "u"}, 5)


# -- writes ------------------------------------------------------------------------------------


async def test_keep_previous_versions_keep_their_timestamps(clock: FakeClock) -> None:
    engine = make_engine(clock, feature("m", "string", kind="push", keep=(2, 3600)))
    keys = {"id": "a"}
    for i, name in enumerate(("x", "y", "z")):
        await engine.set("m", keys, name, T0 + timedelta(seconds=i))
    cur, v1, v2 = [await engine.get(s, keys) for s in ("m", "m@-1", "m@-2")]
    assert (cur.value, v1.value, v2.value) == ("z", "y", "x")
    assert v1.timestamp == T0 + timedelta(seconds=1)
    assert v2.timestamp == T0
    with pytest.raises(SelectorError, match="keeps 2"):
        await engine.get("m@-3", keys)


async def test_older_write_does_not_replace_newer(clock: FakeClock) -> None:
    engine = make_engine(clock, feature("f", kind="push"))
    await engine.set("f", {"id": "a"}, 2, T0)
    res = await engine.set("f", {"id": "a"}, 1, T0 - timedelta(seconds=1))
    assert not res.applied
    assert (await engine.get("f", {"id": "a"})).value == 2


async def test_write_older_than_staleness_skips_online_state(clock: FakeClock) -> None:
    engine = make_engine(clock, feature("f", kind="push"))
    res = await engine.set("f", {"id": "a"}, 1, T0 - timedelta(seconds=61))
    assert not res.applied
    assert (await engine.get("f", {"id": "a"})).value is None


async def test_values_are_type_checked(clock: FakeClock) -> None:
    engine = make_engine(
        clock,
        feature("i", kind="push"),
        feature("fl", "float", kind="push"),
        feature("l", "[]string", kind="push"),
    )
    with pytest.raises(ValueTypeError, match=r"default\.i"):
        await engine.set("i", {"id": "a"}, "12")
    with pytest.raises(ValueTypeError):
        await engine.set("i", {"id": "a"}, True)
    assert (await engine.set("fl", {"id": "a"}, 3)).value == 3.0
    await engine.append("l", {"id": "a"}, "x")
    await engine.update("l", {"id": "a"}, "y")
    assert (await engine.get("l", {"id": "a"})).value == ["x", "y"]
    with pytest.raises(InvalidArgument, match="list"):
        await engine.append("i", {"id": "a"}, 1)
    with pytest.raises(InvalidArgument, match="incr"):
        await engine.incr("l", {"id": "a"}, 1)
    await engine.incr("fl", {"id": "a"}, 0.5)
    assert (await engine.get("fl", {"id": "a"})).value == 3.5


async def test_writes_to_a_model_are_rejected(clock: FakeClock) -> None:
    model = ModelDef(
        fqn=fqn_of("default", "churn"),
        namespace="default",
        name="churn",
        freshness=SECOND,
        staleness=SECOND,
        timeout=0,
        features=(parse_selector("f"),),
        key_feature=parse_selector("f"),
    )
    engine = make_engine(clock, feature("f", kind="push"), model)
    with pytest.raises(ReadOnlyError, match="model"):
        await engine.set("churn", {"id": "a"}, 1)


async def test_bad_requests_raise_precise_errors(clock: FakeClock) -> None:
    engine = make_engine(clock, feature("f", kind="push", keep=(1, 60)))
    with pytest.raises(NotFound, match="nope"):
        await engine.get("nope", {"id": "a"})
    with pytest.raises(MissingKeyError, match="'id'"):
        await engine.get("f", {"other": "a"})
    with pytest.raises(SelectorError, match="malformed"):
        await engine.get("f!!", {"id": "a"})
    with pytest.raises(SelectorError):
        await engine.set("f@-1", {"id": "a"}, 1)


async def test_cycle_and_name_conflict_make_assets_not_ready(clock: FakeClock) -> None:
    a = feature("a", code="def handler(row, ctx) -> int:\n    return ctx.get_feature('b')[0]\n")
    b = feature("b", code="def handler(row, ctx) -> int:\n    return ctx.get_feature('a')[0]\n")
    ok = feature("ok", kind="push")
    catalog = build_catalog([a, b, ok])
    reasons = {s.fqn: s.reason for s in catalog.errors}
    assert reasons == {"default.a": "DependencyCycle", "default.b": "DependencyCycle"}
    assert "default.a -> default.b -> default.a" in catalog.statuses[
        "Feature/default.a"
    ].message or (
        "default.b -> default.a -> default.b" in catalog.statuses["Feature/default.a"].message
    )
    engine = Engine(MemoryStateStore(), clock=clock, catalog=catalog)
    with pytest.raises(NotReady, match="cycle"):
        await engine.get("a", {"id": "x"})
    assert (await engine.get("ok", {"id": "x"})).value is None


# -- pipeline ----------------------------------------------------------------------------------


async def test_get_middlewares_wrap_the_core(clock: FakeClock) -> None:
    seen: list[str] = []

    async def spy(req: GetRequest, call_next: GetHandler) -> FeatureValue:
        seen.append(str(req.selector))
        v = await call_next(req)
        return FeatureValue(v.fqn, v.selector, v.keys, (v.value or 0) + 1, v.timestamp, v.fresh)

    engine = make_engine(clock, feature("f", kind="push"), get_middlewares=[spy])
    await engine.set("f", {"id": "a"}, 1)
    assert (await engine.get("f", {"id": "a"})).value == 2
    assert seen == ["default.f"]


async def test_get_many_reads_every_cell_with_per_cell_errors(clock: FakeClock) -> None:
    code = "def handler(row, ctx) -> int:\n    return int(ctx.keys['id']) * 10\n"
    engine = make_engine(
        clock,
        feature("p", kind="push", keep=(1, 60)),
        feature("w", aggr=("sum", "count")),
        feature("c", code=code),
        feature("two", kind="push", keys=("id", "region")),
    )
    await engine.set("p", {"id": "1"}, 5)
    await engine.set("p", {"id": "1"}, 6)
    await engine.update("w", {"id": "1"}, 3)
    await engine.update("w", {"id": "1"}, 4)
    rows = await engine.get_many(
        ["p", "p@-1", "w+sum", "w+count", "c", "two"],
        [{"id": "1", "region": "eu"}, {"id": "2"}],
    )
    first = [cell.value for cell in rows[0] if isinstance(cell, FeatureValue)]
    assert first == [6, 5, 7, 2, 10, None]
    second = rows[1]
    assert [getattr(cell, "value", "err") for cell in second[:5]] == [None, None, 0, 0, 20]
    assert isinstance(second[5], MissingKeyError)
    with pytest.raises(NotFound):
        await engine.get_many(["nope"], [{"id": "1"}])
    with pytest.raises(SelectorError):
        await engine.get_many(["w"], [{"id": "1"}])
    await engine.aclose()
