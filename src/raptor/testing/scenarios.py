"""What the conformance suite (:mod:`raptor.testing.conformance`) feeds a store and how it judges
the answers: fresh feature names, the fixed windows, policies and values it writes, the Hypothesis
strategy for random window streams, and the comparisons (instants, window partials with float
sums to 1e-9). Support for the suite only, not part of the public kit (:mod:`raptor.testing`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from raptor.api.timeutil import HOUR, MINUTE, SECOND
from raptor.api.windows import AggrFn, Partial, WindowSpec, result
from raptor.state import WritePolicy
from raptor.testing.clock import T0

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "raptor.testing needs pytest, pytest-asyncio and hypothesis: pip install 'raptor[dev]'"
    ) from exc

__all__ = [
    "DAY",
    "KEEP2",
    "ROUND_TRIP_VALUES",
    "W1H",
    "W30D",
    "Scenario",
    "Step",
    "assert_window",
    "fqn",
    "ints",
    "results",
    "same_instant",
    "scenarios",
]

DAY = 24 * HOUR


_ids = itertools.count()


def fqn() -> str:
    """A feature name no other test or example uses."""
    return f"conformance.f{next(_ids)}"


def results(p: Partial) -> dict[str, Any]:
    return {fn.value: result(p, fn) for fn in AggrFn}


def same_instant(a: Any, b: Any) -> bool:
    if isinstance(b, datetime):
        return isinstance(a, datetime) and a.tzinfo is not None and a == b
    if isinstance(b, list):
        return type(a) is list and len(a) == len(b) and all(map(same_instant, a, b))
    return type(a) is type(b) and a == b


def assert_window(got: Partial, want: Partial, scale: float = 0.0) -> None:
    """Same count, exact int sums and min/max (ints stay ints), float sums to 1e-9."""
    s, c, mn, mx = got
    ws, wc, wmn, wmx = want
    assert (c, mn, mx) == (wc, wmn, wmx), f"got {got}, want {want}"
    assert (type(c), type(mn), type(mx)) == (int, type(wmn), type(wmx)), (got, want)
    if isinstance(ws, float):
        assert isinstance(s, float)
        assert math.isclose(s, ws, rel_tol=1e-9, abs_tol=scale * 1e-9)
        avg, want_avg = result(got, AggrFn.AVG), result(want, AggrFn.AVG)
        assert math.isclose(avg, want_avg, rel_tol=1e-9, abs_tol=scale * 1e-9 / wc)
    else:
        assert (s, type(s)) == (ws, type(ws)), f"sum {s!r}, want {ws!r}"
        assert result(got, AggrFn.AVG) == result(want, AggrFn.AVG)


W1H = WindowSpec(granularity=MINUTE, over=HOUR)
W30D = WindowSpec(granularity=MINUTE, over=30 * DAY)
KEEP2 = WritePolicy(versions=2, version_ttl=10 * SECOND)

ROUND_TRIP_VALUES: list[Any] = [
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    -0.1,
    0.1 + 0.2,
    1e300,
    "",
    "plain",
    "ünïcødé ✓ 🦖",
    True,
    False,
    datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
    [],
    [1, -2, 2**63 - 1],
    [0.5, 0.1 + 0.2],
    ["a", "", "ü"],
    [True, False],
    [datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, 1, tzinfo=UTC)],
]


@dataclass(frozen=True)
class Step:
    advance: int
    events: tuple[tuple[int, Any], ...] | None  # None: a read at now + advance
    batch_read: bool = False


@dataclass(frozen=True)
class Scenario:
    window: WindowSpec
    start: int
    steps: tuple[Step, ...]


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    g = draw(st.sampled_from([1, 7, 1000, SECOND, MINUTE]))
    n = draw(st.one_of(st.integers(1, 20), st.integers(1, 2000)))
    grace = draw(st.sampled_from([0, g, 5 * g, 300 * SECOND]))
    # Lengths that are (or are not) a multiple of g: they disagree on the oldest bucket's end.
    lengths = st.one_of(
        st.sampled_from([(n - 1) * g + 1, n * g]), st.integers((n - 1) * g + 1, n * g)
    )
    window = WindowSpec(granularity=g, over=draw(lengths), grace=grace)
    values = draw(
        st.sampled_from([st.integers(-(10**6), 10**6), st.floats(-1e6, 1e6, allow_nan=False)])
    )
    small = st.integers(0, 2 * g)
    advance = st.one_of(st.sampled_from([0, 1]), small, st.integers(0, (n + 3) * g + grace))
    near_oldest = st.integers(-n * g - 1, -(n - 1) * g + 1)  # around the window's far edge
    event = st.tuples(st.one_of(st.integers(-(n + 1) * g, 2 * g), near_oldest), values)
    steps = draw(
        st.lists(
            st.one_of(
                st.builds(Step, advance, st.lists(event, min_size=1, max_size=8).map(tuple)),
                st.builds(Step, advance, st.none(), st.booleans()),
            ),
            min_size=1,
            max_size=25,
        )
    )
    return Scenario(window, T0 + draw(st.integers(0, n * g)), tuple(steps))


ints = st.integers(-(2**40), 2**40)
