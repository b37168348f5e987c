"""Replay: production rows, the engine's window and value semantics, derived features."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import TypedDict

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raptor import aggregation, data_source, feature, freshness, keep_previous
from raptor.api.timeutil import SECOND, to_micros
from raptor.api.windows import AggrFn, WindowSpec, result
from raptor.errors import ProgramRuntimeError
from raptor.sdk.registry import Registry
from raptor.testing import oracle_window

T0 = datetime(2024, 6, 1, tzinfo=UTC)


def ts(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def frame(rows: list[tuple[str, float, float]]) -> pd.DataFrame:
    """``(id, seconds after T0, x)`` rows."""
    return pd.DataFrame(
        {
            "id": [r[0] for r in rows],
            "ts": pd.to_datetime([ts(r[1]) for r in rows], utc=True),
            "x": [r[2] for r in rows],
        }
    )


@pytest.fixture
def reg() -> Registry:
    with Registry() as r:
        yield r


def source(df: pd.DataFrame) -> type:
    @data_source(training_data=df, keys="id", timestamp="ts")
    class Events(TypedDict):
        id: str
        ts: str
        x: float

    return Events


@settings(max_examples=200, deadline=None)
@given(
    g=st.sampled_from([1, 2, 5]),
    n_over=st.integers(1, 15),
    raw=st.lists(
        st.tuples(st.sampled_from("ab"), st.integers(0, 60), st.integers(-50, 50)), max_size=30
    ),
    reads=st.lists(st.integers(-5, 80), min_size=1, max_size=6),
)
def test_windows_match_the_naive_oracle(
    g: int, n_over: int, raw: list[tuple[str, int, int]], reads: list[int]
) -> None:
    with Registry():
        src = source(frame([(k, t, float(x)) for k, t, x in raw]))

        @feature(data_source=src)
        @aggregation(["sum", "count", "min", "max", "avg"], over=max(n_over, g), granularity=g)
        def w(row, ctx) -> int:
            return int(row["x"])

        at = pd.DataFrame(
            {
                "timestamp": pd.to_datetime([ts(r) for r in reads for _ in "ab"], utc=True),
                "id": ["a", "b"] * len(reads),
            }
        )
        got = w.replay(at=at)
    spec = WindowSpec(g * SECOND, max(n_over, g) * SECOND)
    for i, row in got.iterrows():
        events = [(to_micros(ts(t)), x) for k, t, x in raw if k == row["id"]]
        want = oracle_window(events, spec, to_micros(ts(reads[i // 2])))
        for fn in AggrFn:
            value = row[f"default.w+{fn.value}"]
            expected = result(want, fn)
            if expected is None:
                assert pd.isna(value)
            elif fn is AggrFn.AVG:
                assert math.isclose(value, expected)
            else:
                assert value == expected
                assert not isinstance(value, float)


def test_replay_gives_the_window_at_each_event_including_ties(reg: Registry) -> None:
    src = source(frame([("a", 0, 1), ("a", 30, 2), ("a", 30, 4), ("a", 200, 8), ("b", 10, 5)]))

    @feature(data_source=src)
    @aggregation(["sum", "count"], over="2m", granularity="1m")
    def w(row, ctx) -> float:
        return row["x"]

    out = w.replay()
    assert list(out.columns) == ["timestamp", "id", "default.w+sum", "default.w+count"]
    assert out["timestamp"].is_monotonic_increasing
    a = out[out["id"] == "a"]
    # both rows at t=30 see both events of t=30; t=200 has left the first buckets
    assert a["default.w+sum"].tolist() == [1.0, 7.0, 7.0, 8.0]
    assert a["default.w+count"].tolist() == [1, 3, 3, 1]


def test_previous_versions_expire_as_in_state(reg: Registry) -> None:
    src = source(frame([("a", 0, 1), ("a", 10, 2), ("a", 20, 3), ("a", 200, 4)]))

    @feature(data_source=src)
    @freshness(max_age="30s", max_stale="60s")
    @keep_previous(versions=2, over="50s")
    def last(row, ctx) -> float:
        return row["x"]

    at = pd.DataFrame(
        {"timestamp": pd.to_datetime([ts(t) for t in (5, 25, 85, 125, 200)], utc=True), "id": "a"}
    )
    out = last.replay(at=at)
    cur, v1, v2 = (out[c].tolist() for c in ("default.last", "default.last@-1", "default.last@-2"))
    nan = float("nan")
    # current: usable 60s; @-1: 50s after the write that shifted it; @-2: 100s after it
    assert _same(cur, [1.0, 3.0, nan, nan, 4.0])
    assert _same(v1, [nan, 2.0, nan, nan, nan])
    assert _same(v2, [nan, 1.0, 1.0, nan, nan])  # at 200 the expired values shifted as gone


def _same(a: list[float], b: list[float]) -> bool:
    return all((math.isnan(x) and math.isnan(y)) or x == y for x, y in zip(a, b, strict=True))


def test_list_features_append_and_restart_after_staleness(reg: Registry) -> None:
    src = source(frame([("a", 0, 1), ("a", 10, 2), ("a", 100, 3)]))

    @feature(data_source=src)
    @freshness(max_age="30s", max_stale="30s")
    def seen(row, ctx) -> list[int]:
        return [int(row["x"]), int(row["x"]) * 10]

    out = seen.replay()
    assert out["default.seen"].tolist() == [[1, 10], [1, 10, 2, 20], [3, 30]]


def test_rows_look_like_production_rows(reg: Registry) -> None:
    df = pd.DataFrame(
        {
            "id": [7, 8],
            "ts": pd.to_datetime([ts(0), ts(1)], utc=True),
            "amount": [1.0, np.nan],
            "meta": [{"country": "FR", "geo": {"lat": 1}}, {"country": "DE", "geo": {"lat": 2}}],
        }
    )

    @data_source(training_data=df, keys="id", timestamp="ts")
    class Rows(TypedDict):
        id: int
        ts: str
        amount: float
        meta: dict

    @feature(data_source=Rows)
    @freshness("1m")
    def shape(row, ctx) -> str:
        parts = [
            type(row["id"]).__name__,
            row["ts"],
            str(row["amount"]),
            row["meta.country"],
            str(row["meta.geo.lat"]),
            row["meta"]["country"],
            ",".join(sorted(ctx.keys)),
            ctx.keys["id"],
            ctx.timestamp.isoformat(),
        ]
        return "|".join(parts)

    out = shape.replay()
    assert out["default.shape"].tolist()[0] == (
        "int|2024-06-01T00:00:00.000000Z|1.0|FR|1|FR|id|7|2024-06-01T00:00:00+00:00"
    )
    assert "|None|" in out["default.shape"].tolist()[1]
    assert out["id"].tolist() == [7, 8]  # int keys come back as the frame's ints


def test_projection_fast_path_equals_running_the_program(reg: Registry) -> None:
    rng = np.random.default_rng(3)
    n = 2000
    df = pd.DataFrame(
        {
            "id": rng.choice(["a", "b", "c"], n),
            "ts": pd.to_datetime(T0) + pd.to_timedelta(rng.integers(0, 3600, n), unit="s"),
            "x": rng.normal(size=n),
        }
    )
    df.loc[::7, "x"] = np.nan
    src = source(df)

    @feature(data_source=src)
    @aggregation(["sum", "count", "max"], "10m", "1m")
    def fast(row, ctx) -> float:
        return row["x"]

    @feature(data_source=src)
    @aggregation(["sum", "count", "max"], "10m", "1m")
    def slow(row, ctx) -> float:
        value = row["x"]
        return value

    a, b = fast.replay(), slow.replay()
    assert len(a) == n - len(df.loc[::7])
    for fn in ("sum", "count", "max"):
        assert np.allclose(a[f"default.fast+{fn}"], b[f"default.slow+{fn}"], rtol=0, atol=0)


def test_program_results_can_override_keys_and_time(reg: Registry) -> None:
    src = source(frame([("a", 0, 1), ("a", 10, 2)]))

    @feature(data_source=src)
    @freshness("1h")
    def moved(row, ctx) -> float:
        return row["x"], {"id": "z"}, ctx.timestamp + timedelta(seconds=100)

    out = moved.replay()
    assert out["id"].tolist() == ["z", "z"]
    assert out["timestamp"].tolist() == [pd.Timestamp(ts(100)), pd.Timestamp(ts(110))]


def test_rows_without_keys_are_dropped_and_counted(reg: Registry) -> None:
    df = frame([("a", 0, 1), ("a", 1, 2)])
    df.loc[1, "id"] = None
    src = source(df)

    @feature(data_source=src)
    @freshness("1h")
    def v(row, ctx) -> float:
        return row["x"] * 1

    assert v.replay()["default.v"].tolist() == [1.0]


def test_a_program_error_names_the_row(reg: Registry) -> None:
    src = source(frame([("a", 0, 1), ("a", 1, 0)]))

    @feature(data_source=src)
    @freshness("1h")
    def inv(row, ctx) -> float:
        return 1 / row["x"]

    with pytest.raises(ProgramRuntimeError, match=r"training row 1.*ZeroDivisionError"):
        inv.replay()


def test_sourceless_features_replay_on_markers_and_read_point_in_time(reg: Registry) -> None:
    src = source(frame([("a", 0, 5), ("a", 90, 7)]))

    @feature(data_source=src)
    @aggregation("sum", "1m", "1m")
    def total(row, ctx) -> float:
        return row["x"]

    markers = pd.DataFrame(
        {"timestamp": pd.to_datetime([ts(95), ts(30), ts(200)], utc=True), "id": "a"}
    )

    @feature(keys="id", sourceless_markers_df=markers)
    @freshness("0s", "1m")
    def doubled(row, ctx) -> float:
        value, when = ctx.get_feature("total")
        other, _ = ctx.get_feature("total", {"id": "nobody"})
        assert when == ctx.timestamp
        return value * 2 + other

    out = doubled.replay()
    assert out["default.doubled"].tolist() == [10.0, 14.0, 0.0]
    assert out["timestamp"].is_monotonic_increasing


def test_sourceless_without_markers_asks_for_them(reg: Registry) -> None:
    @feature(keys="id")
    @freshness("1m")
    def clock(row, ctx) -> int:
        return ctx.timestamp.hour

    with pytest.raises(ValueError, match="sourceless_markers_df"):
        clock.replay()
    at = pd.DataFrame({"timestamp": [ts(3600 * 5)], "id": ["x"]})
    assert clock.replay(at=at)["default.clock"].tolist() == [5]


def test_progress_is_reported_on_request(reg: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    src = source(frame([("a", i, i) for i in range(10)]))

    @feature(data_source=src)
    @freshness("1h")
    def v(row, ctx) -> float:
        return row["x"] + 1

    v.replay()
    assert capsys.readouterr().err == ""
    from raptor.sdk.replay import ReplaySession

    ReplaySession(reg, progress=True).replay(v.fqn)
    assert "10/10 rows (100%)" in capsys.readouterr().err


def test_plot_draws_one_line_per_entity(reg: Registry) -> None:
    mpl = pytest.importorskip("matplotlib")
    mpl.use("Agg")
    src = source(frame([("a", 0, 1), ("b", 10, 2), ("a", 20, 3)]))

    @feature(data_source=src)
    @aggregation(["sum", "count"], "1m", "10s")
    def w(row, ctx) -> float:
        return row["x"]

    axes = w.plot()
    assert len(axes) == 2
    assert len(axes[0].get_lines()) == 2
