"""The window maths of raptor.api.windows, checked against naive recomputes with Hypothesis."""

from __future__ import annotations

import functools
import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raptor.api.windows import (
    DEFAULT_GRACE,
    FANOUT,
    TOP_LEVEL_TARGET,
    AggrFn,
    BucketId,
    Partial,
    WindowSpec,
    add,
    initial,
    merge,
    merge_all,
    result,
)

MINUTE = 60_000_000
DAY = 24 * 60 * MINUTE

granularities = st.one_of(st.integers(1, 10), st.integers(1, 10**7), st.just(MINUTE))
instants = st.integers(-(10**17), 10**17)  # about ±3,000 years around the epoch, in µs
ints = st.integers(-(2**63), 2**63 - 1)


@st.composite
def windows(draw: st.DrawFn, max_buckets: int = 100_000) -> WindowSpec:
    g = draw(granularities)
    n = draw(st.one_of(st.integers(1, 200), st.integers(1, max_buckets)))
    over = draw(st.integers((n - 1) * g + 1, n * g))  # every length that gives n buckets
    return WindowSpec(granularity=g, over=over, grace=draw(st.sampled_from([0, DEFAULT_GRACE])))


def fine_range(bucket: BucketId) -> range:
    level, index = bucket
    size = FANOUT**level
    return range(index * size, (index + 1) * size)


def partial_of(xs: list[Any]) -> Partial:
    return (sum(xs), len(xs), min(xs), max(xs)) if xs else (0, 0, None, None)


# -- spec ---------------------------------------------------------------------------------------


@given(windows())
def test_buckets_is_ceil_of_over_by_granularity_and_levels_are_the_fewest(w: WindowSpec) -> None:
    assert (w.buckets - 1) * w.granularity < w.over <= w.buckets * w.granularity
    assert w.buckets <= TOP_LEVEL_TARGET * FANOUT ** (w.levels - 1)
    assert w.levels == 1 or w.buckets > TOP_LEVEL_TARGET * FANOUT ** (w.levels - 2)


@pytest.mark.parametrize(
    ("granularity", "over", "grace"), [(0, 1, 0), (-1, 1, 0), (1, 0, 0), (1, -5, 0), (1, 1, -1)]
)
def test_window_spec_refuses_non_positive_sizes_and_negative_grace(
    granularity: int, over: int, grace: int
) -> None:
    with pytest.raises(ValueError, match="window"):
        WindowSpec(granularity=granularity, over=over, grace=grace)


def test_equal_specs_are_interchangeable_whatever_their_cached_cover() -> None:
    a, b = WindowSpec(MINUTE, 60 * MINUTE), WindowSpec(MINUTE, 60 * MINUTE)
    a.cover(10**15)
    assert a == b
    assert hash(a) == hash(b)
    assert {a: 1}[b] == 1
    assert "cover" not in repr(a)


# -- cover --------------------------------------------------------------------------------------


@given(windows(), instants)
def test_cover_tiles_the_span_exactly(w: WindowSpec, at: int) -> None:
    n = -(-w.over // w.granularity)
    hi = at // w.granularity
    assert w.span(at) == (hi - n + 1, hi)
    pieces = sorted((fine_range(b) for b in w.cover(at)), key=lambda r: r.start)
    assert all(0 <= level < w.levels for level, _ in w.cover(at))
    assert pieces[0].start == hi - n + 1
    assert pieces[-1].stop - 1 == hi
    for left, right in itertools.pairwise(pieces):
        assert left.stop == right.start  # disjoint and without gaps


@given(windows(), instants)
def test_cover_has_at_most_two_partial_runs_per_level_plus_the_top(w: WindowSpec, at: int) -> None:
    """At most FANOUT-1 pieces on each side of every level below the top, then whole top-level
    buckets, of which there are at most buckets // FANOUT**(levels-1) <= TOP_LEVEL_TARGET."""
    cover = w.cover(at)
    below_top = w.levels - 1
    assert len(cover) <= 2 * (FANOUT - 1) * below_top + w.buckets // FANOUT**below_top
    assert len(cover) <= 2 * (FANOUT - 1) * below_top + TOP_LEVEL_TARGET
    for level in range(below_top):
        assert sum(1 for lv, _ in cover if lv == level) <= 2 * (FANOUT - 1)
    assert len(cover) <= w.buckets


def test_thirty_days_at_one_minute_never_needs_more_than_45_pieces() -> None:
    """Exhaustive: a cover depends only on b(at) modulo FANOUT**(levels-1)."""
    w = WindowSpec(granularity=MINUTE, over=30 * DAY)
    assert (w.buckets, w.levels) == (43_200, 5)
    sizes = [len(w.cover(i * MINUTE)) for i in range(FANOUT ** (w.levels - 1))]
    assert max(sizes) == 45
    assert max(sizes) <= 64


@given(windows(), st.lists(instants, min_size=1, max_size=20))
def test_cached_cover_equals_a_fresh_computation(w: WindowSpec, ats: list[int]) -> None:
    for at in sorted(ats) + ats:
        fresh = WindowSpec(w.granularity, w.over, w.grace)
        assert w.cover(at) == fresh.cover(at)


def test_reads_within_one_bucket_share_one_cover() -> None:
    w = WindowSpec(granularity=MINUTE, over=30 * DAY)
    start = 1_717_200_000_000_000
    first = w.cover(start)
    assert w.cover(start + MINUTE - 1) is first
    assert w.cover(start + MINUTE) != first


# -- placement, lateness, expiry -----------------------------------------------------------------


@given(windows(), instants)
def test_targets_are_the_bucket_holding_t_at_every_level(w: WindowSpec, t: int) -> None:
    targets = w.targets(t)
    assert [level for level, _ in targets] == list(range(w.levels))
    for bucket in targets:
        assert t // w.granularity in fine_range(bucket)


@given(windows(), instants, st.integers(-(10**12), 10**12))
def test_is_late_means_the_bucket_already_left_the_window(
    w: WindowSpec, now: int, offset: int
) -> None:
    t = now + offset
    g, n = w.granularity, -(-w.over // w.granularity)
    assert w.is_late(t, now) == (t // g < now // g - n + 1)
    if t >= now:
        assert not w.is_late(t, now)


@given(windows(max_buckets=5_000), instants, st.integers(0, 10**6))
def test_no_cover_uses_a_bucket_at_or_after_its_expiry(
    w: WindowSpec, at: int, later_buckets: int
) -> None:
    for bucket in w.cover(at):
        level, index = bucket
        end = (index + 1) * FANOUT**level * w.granularity
        assert w.bucket_expiry(bucket) == end + w.over + w.grace
        assert at < w.bucket_expiry(bucket)
    later = at + later_buckets * w.granularity
    assert all(later < w.bucket_expiry(b) for b in w.cover(later))


def test_bucket_expiry_adds_window_and_grace_to_the_bucket_end() -> None:
    w = WindowSpec(granularity=10, over=25, grace=3)
    assert w.bucket_expiry((0, 4)) == 50 + 25 + 3
    assert w.bucket_expiry((1, -1)) == 0 + 25 + 3


# -- partials -----------------------------------------------------------------------------------


@given(st.lists(ints, max_size=30))
def test_add_folds_to_the_naive_partial(xs: list[int]) -> None:
    assert functools.reduce(add, xs, initial()) == partial_of(xs)


@given(st.lists(st.lists(ints, max_size=10), max_size=8))
def test_merge_all_equals_the_partial_of_everything(chunks: list[list[int]]) -> None:
    parts = [partial_of(c) for c in chunks]
    everything = partial_of([x for c in chunks for x in c])
    assert merge_all(parts) == everything
    assert functools.reduce(merge, parts, initial()) == everything


@given(st.lists(ints, max_size=10), st.lists(ints, max_size=10), st.lists(ints, max_size=10))
def test_merge_is_associative_and_commutative_with_an_identity(
    a: list[int], b: list[int], c: list[int]
) -> None:
    pa, pb, pc = partial_of(a), partial_of(b), partial_of(c)
    assert merge(merge(pa, pb), pc) == merge(pa, merge(pb, pc))
    assert merge(pa, pb) == merge(pb, pa)
    assert merge(pa, initial()) == pa == merge(initial(), pa)


@given(st.lists(ints, min_size=1, max_size=30))
def test_result_of_ints_keeps_ints_and_avg_is_a_float(xs: list[int]) -> None:
    p = partial_of(xs)
    assert result(p, AggrFn.COUNT) == len(xs)
    assert type(result(p, AggrFn.COUNT)) is int
    assert result(p, AggrFn.SUM) == sum(xs)
    assert type(result(p, AggrFn.SUM)) is int
    assert (result(p, AggrFn.MIN), result(p, AggrFn.MAX)) == (min(xs), max(xs))
    assert result(p, AggrFn.AVG) == sum(xs) / len(xs)
    assert type(result(p, AggrFn.AVG)) is float


def test_result_of_an_empty_window_is_zero_count_zero_sum_and_no_value() -> None:
    got = {fn: result(initial(), fn) for fn in AggrFn}
    want = {AggrFn.SUM: 0, AggrFn.COUNT: 0, AggrFn.MIN: None, AggrFn.MAX: None, AggrFn.AVG: None}
    assert got == want


def test_float_partials_keep_floats() -> None:
    p = functools.reduce(add, [2.5, -1.0, 0.5], initial())
    assert p == (2.0, 3, -1.0, 2.5)
    assert result(p, AggrFn.AVG) == pytest.approx(2.0 / 3)


@pytest.mark.parametrize(
    ("text", "fn"),
    [("sum", AggrFn.SUM), ("COUNT", AggrFn.COUNT), (" Min ", AggrFn.MIN), ("mean", AggrFn.AVG)],
)
def test_aggregation_names_parse_in_any_case_with_mean_as_avg(text: str, fn: AggrFn) -> None:
    assert AggrFn.parse(text) is fn


def test_unknown_aggregation_name_lists_the_choices() -> None:
    with pytest.raises(ValueError, match="expected sum, count, min, max, avg"):
        AggrFn.parse("median")
