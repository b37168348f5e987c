"""The conformance suite that every :class:`~raptor.state.StateStore` backend passes:
:class:`StateStoreConformance`. What it writes and how it compares answers (fixed values, the
Hypothesis scenarios) is :mod:`raptor.testing.scenarios`.

:class:`StateStoreConformance` is a pytest mix-in. A backend's test module subclasses it and
provides an async fixture ``store`` yielding a fresh, empty store (closing it is the fixture's
job, and must tolerate a store the test already closed)::

    class TestMemoryStore(StateStoreConformance):
        @pytest.fixture
        async def store(self) -> AsyncIterator[StateStore]:
            yield MemoryStateStore()

Tests are coroutines (``asyncio_mode = auto``, or mark the subclass ``pytest.mark.asyncio``).
Times are realistic (2024, from :data:`raptor.testing.clock.T0`) and never go backwards within a
test (every ``now``/``at`` is at least the ``now`` of the writes before it); a backend may rely on
that. Every test and every Hypothesis example uses its own feature names, so a shared server
needs no flush between them. Window results are checked against
:func:`~raptor.testing.oracle.oracle_window`.

Needs pytest, pytest-asyncio and hypothesis (the ``dev`` extra); without them importing it (and
so :mod:`raptor.testing`) raises an ImportError that says what to install.
"""

from __future__ import annotations

from typing import Any

from raptor.api.timeutil import HOUR, MINUTE, SECOND
from raptor.api.windows import AggrFn, WindowSpec, result
from raptor.state import (
    Stamped,
    StateStore,
    ValueRead,
    ValueWrite,
    WindowAdd,
    WindowRead,
    WriteOp,
    WritePolicy,
)
from raptor.testing.clock import T0
from raptor.testing.oracle import oracle_window
from raptor.testing.scenarios import (
    DAY,
    KEEP2,
    ROUND_TRIP_VALUES,
    W1H,
    W30D,
    Scenario,
    assert_window,
    fqn,
    ints,
    results,
    same_instant,
    scenarios,
)

try:
    import pytest
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "raptor.testing needs pytest, pytest-asyncio and hypothesis: pip install 'raptor[dev]'"
    ) from exc

__all__ = ["StateStoreConformance"]


class StateStoreConformance:
    """The StateStore contract (``raptor.state``) as tests. Subclass it and provide ``store``."""

    # -- values -------------------------------------------------------------------------------

    async def test_store_satisfies_the_protocol_and_answers_ping(self, store: StateStore) -> None:
        assert isinstance(store, StateStore)
        await store.ping()  # answers without raising

    async def test_absent_value_reads_none_for_every_version(self, store: StateStore) -> None:
        assert await store.read(fqn(), "u1", 0, T0) == [None]
        assert await store.read(fqn(), "u1", 3, T0) == [None] * 4

    async def test_set_replaces_the_value(self, store: StateStore) -> None:
        f = fqn()
        assert await store.write(f, "u", WriteOp.SET, 1, T0, WritePolicy(), T0) == Stamped(1, T0)
        got = await store.write(f, "u", WriteOp.SET, 2, T0 + 5, WritePolicy(), T0 + 5)
        assert got == Stamped(2, T0 + 5)
        assert await store.read(f, "u", 0, T0 + 5) == [Stamped(2, T0 + 5)]

    async def test_append_starts_a_missing_list_and_adds_at_the_end(
        self, store: StateStore
    ) -> None:
        f = fqn()
        p = WritePolicy()
        assert await store.write(f, "u", WriteOp.APPEND, "a", T0, p, T0) == Stamped(["a"], T0)
        assert await store.write(f, "u", WriteOp.APPEND, "b", T0 + 1, p, T0 + 1) == Stamped(
            ["a", "b"], T0 + 1
        )
        await store.write(f, "u", WriteOp.SET, ["x"], T0 + 2, p, T0 + 2)
        await store.write(f, "u", WriteOp.APPEND, "y", T0 + 3, p, T0 + 3)
        assert await store.read(f, "u", 0, T0 + 3) == [Stamped(["x", "y"], T0 + 3)]

    async def test_incr_starts_a_missing_number_at_zero(self, store: StateStore) -> None:
        f, g = fqn(), fqn()
        p = WritePolicy()
        got = await store.write(f, "u", WriteOp.INCR, 5, T0, p, T0)
        assert got == Stamped(5, T0)
        assert type(got.value) is int
        got = await store.write(f, "u", WriteOp.INCR, -7, T0 + 1, p, T0 + 1)
        assert got is not None
        assert got.value == -2
        assert type(got.value) is int
        got = await store.write(g, "u", WriteOp.INCR, 0.25, T0, p, T0)
        assert got == Stamped(0.25, T0)
        assert type(got.value) is float

    async def test_incr_keeps_ints_exact_and_a_float_makes_a_float(self, store: StateStore) -> None:
        f, g = fqn(), fqn()
        p = WritePolicy()
        await store.write(f, "u", WriteOp.SET, 2**53, T0, p, T0)
        got = await store.write(f, "u", WriteOp.INCR, 1, T0, p, T0)
        assert got is not None
        assert got.value == 2**53 + 1
        got = await store.write(f, "u", WriteOp.INCR, 2**63 - 2**53 - 2, T0, p, T0)
        assert got is not None
        assert got.value == 2**63 - 1
        assert type(got.value) is int
        await store.write(g, "u", WriteOp.INCR, 1, T0, p, T0)
        got = await store.write(g, "u", WriteOp.INCR, 0.5, T0, p, T0)
        assert got is not None
        assert got.value == 1.5
        assert type(got.value) is float

    @pytest.mark.parametrize("op", list(WriteOp))
    async def test_older_write_is_ignored_without_shifting_versions(
        self, store: StateStore, op: WriteOp
    ) -> None:
        f = fqn()
        one, two, late = ([1], [2], 9) if op is WriteOp.APPEND else (1, 2, 9)
        await store.write(f, "u", WriteOp.SET, one, T0 + 10, KEEP2, T0)
        await store.write(f, "u", WriteOp.SET, two, T0 + 20, KEEP2, T0)
        assert await store.write(f, "u", op, late, T0 + 19, KEEP2, T0 + 1) is None
        want = [Stamped(two, T0 + 20), Stamped(one, T0 + 10), None]
        assert await store.read(f, "u", 2, T0 + 1) == want

    async def test_equal_timestamp_write_applies(self, store: StateStore) -> None:
        f = fqn()
        await store.write(f, "u", WriteOp.SET, 1, T0, KEEP2, T0)
        assert await store.write(f, "u", WriteOp.SET, 2, T0, KEEP2, T0) == Stamped(2, T0)
        assert await store.write(f, "u", WriteOp.INCR, 3, T0, KEEP2, T0) == Stamped(5, T0)
        assert await store.read(f, "u", 2, T0) == [Stamped(5, T0), Stamped(2, T0), Stamped(1, T0)]

    async def test_versions_shift_keeping_their_own_timestamps(self, store: StateStore) -> None:
        f = fqn()
        for i in range(4):
            await store.write(f, "u", WriteOp.SET, f"v{i}", T0 + i, KEEP2, T0 + i)
        want = [Stamped("v3", T0 + 3), Stamped("v2", T0 + 2), Stamped("v1", T0 + 1), None]
        assert await store.read(f, "u", 3, T0 + 3) == want
        assert await store.read(f, "u", 1, T0 + 3) == want[:2]

    async def test_current_value_is_usable_until_staleness_after_its_timestamp(
        self, store: StateStore
    ) -> None:
        f = fqn()
        p = WritePolicy(staleness=MINUTE)
        await store.write(f, "u", WriteOp.SET, 1, T0 - 10 * SECOND, p, T0)
        assert await store.read(f, "u", 0, T0 + 50 * SECOND) == [Stamped(1, T0 - 10 * SECOND)]
        assert await store.read(f, "u", 0, T0 + 50 * SECOND + 1) == [None]

    async def test_zero_staleness_never_expires(self, store: StateStore) -> None:
        f = fqn()
        await store.write(f, "u", WriteOp.SET, 1, T0, WritePolicy(), T0)
        assert await store.read(f, "u", 0, T0 + 3650 * DAY) == [Stamped(1, T0)]

    async def test_version_expires_i_times_version_ttl_after_the_shifting_write(
        self, store: StateStore
    ) -> None:
        f, ttl = fqn(), KEEP2.version_ttl
        for i, now in enumerate((T0, T0 + SECOND, T0 + 2 * SECOND)):
            await store.write(f, "u", WriteOp.SET, i, now, KEEP2, now)
        last = T0 + 2 * SECOND
        cur, v1, v2 = Stamped(2, last), Stamped(1, T0 + SECOND), Stamped(0, T0)
        assert await store.read(f, "u", 2, last + ttl) == [cur, v1, v2]
        assert await store.read(f, "u", 2, last + ttl + 1) == [cur, None, v2]
        assert await store.read(f, "u", 2, last + 2 * ttl) == [cur, None, v2]
        assert await store.read(f, "u", 2, last + 2 * ttl + 1) == [cur, None, None]

    async def test_zero_version_ttl_keeps_versions(self, store: StateStore) -> None:
        f, p = fqn(), WritePolicy(versions=1)
        await store.write(f, "u", WriteOp.SET, "a", T0, p, T0)
        await store.write(f, "u", WriteOp.SET, "b", T0 + 1, p, T0 + 1)
        got = await store.read(f, "u", 1, T0 + 3650 * DAY)
        assert got == [Stamped("b", T0 + 1), Stamped("a", T0)]

    async def test_expired_value_is_absent_for_every_purpose(self, store: StateStore) -> None:
        """Once expired at ``now`` a value neither blocks an older write, nor seeds INCR/APPEND,
        nor comes back as a previous version."""
        f, g = fqn(), fqn()
        p = WritePolicy(staleness=MINUTE, versions=1, version_ttl=HOUR)
        longer = WritePolicy(staleness=HOUR, versions=1, version_ttl=HOUR)
        later = T0 + 2 * MINUTE
        await store.write(f, "u", WriteOp.SET, 10, T0, p, T0)
        got = await store.write(f, "u", WriteOp.INCR, 1, T0 - 1, longer, later)
        assert got == Stamped(1, T0 - 1)
        assert await store.read(f, "u", 1, later) == [Stamped(1, T0 - 1), None]
        await store.write(g, "u", WriteOp.APPEND, "a", T0, p, T0)
        got = await store.write(g, "u", WriteOp.APPEND, "b", later, p, later)
        assert got == Stamped(["b"], later)
        assert await store.read(g, "u", 1, later) == [Stamped(["b"], later), None]

    async def test_features_and_entities_are_independent(self, store: StateStore) -> None:
        f, g = fqn(), fqn()
        entities = ["u", "", "u:1", "{u}", "u|1", "ü"]
        for i, e in enumerate(entities):
            await store.write(f, e, WriteOp.SET, i, T0, WritePolicy(), T0)
            await store.window_add(f, e, W1H, [(T0, i + 1)], T0)
        await store.write(g, "u", WriteOp.INCR, 100, T0, WritePolicy(), T0)
        for i, e in enumerate(entities):
            assert await store.read(f, e, 0, T0) == [Stamped(i, T0)]
            assert await store.window_read(f, e, W1H, T0) == (i + 1, 1, i + 1, i + 1)
        assert await store.read(g, "u", 0, T0) == [Stamped(100, T0)]
        assert await store.read(g, "u:1", 0, T0) == [None]
        assert await store.window_read(g, "u", W1H, T0) == (0, 0, None, None)

    @pytest.mark.parametrize("value", ROUND_TRIP_VALUES, ids=repr)
    async def test_values_of_every_primitive_round_trip(
        self, store: StateStore, value: Any
    ) -> None:
        f = fqn()
        written = await store.write(f, "u", WriteOp.SET, value, T0, WritePolicy(), T0)
        (got,) = await store.read(f, "u", 0, T0)
        for stamped in (written, got):
            assert stamped is not None
            assert stamped.timestamp == T0
            assert same_instant(stamped.value, value), f"{stamped.value!r} != {value!r}"

    async def test_stored_lists_are_not_aliased_by_callers(self, store: StateStore) -> None:
        f, value = fqn(), [1, 2]
        written = await store.write(f, "u", WriteOp.SET, value, T0, WritePolicy(), T0)
        value.append(3)
        assert written is not None
        written.value.append(4)
        (got,) = await store.read(f, "u", 0, T0)
        assert got is not None
        got.value.append(5)
        assert await store.read(f, "u", 0, T0) == [Stamped([1, 2], T0)]

    # -- windows ------------------------------------------------------------------------------

    async def test_window_gives_every_function(self, store: StateStore) -> None:
        f = fqn()
        added = await store.window_add(f, "u", W1H, [(T0 - 5, 3), (T0 - 4, 1), (T0, 2)], T0)
        assert added == 3
        got = await store.window_read(f, "u", W1H, T0)
        assert results(got) == {"sum": 6, "count": 3, "min": 1, "max": 3, "avg": 2.0}
        assert type(result(got, AggrFn.SUM)) is int
        assert type(result(got, AggrFn.AVG)) is float

    async def test_empty_window_is_zero_count_zero_sum_and_no_value(
        self, store: StateStore
    ) -> None:
        f = fqn()
        want = {"sum": 0, "count": 0, "min": None, "max": None, "avg": None}
        assert results(await store.window_read(f, "u", W1H, T0)) == want
        await store.window_add(f, "other", W1H, [(T0, 1)], T0)
        assert results(await store.window_read(f, "u", W1H, T0)) == want

    async def test_float_window_keeps_exact_float_min_and_max(self, store: StateStore) -> None:
        f, xs = fqn(), [0.1 + 0.2, -1 / 3, 2.5, 1e-9]
        await store.window_add(f, "u", W1H, [(T0 - i, x) for i, x in enumerate(xs)], T0)
        assert_window(
            await store.window_read(f, "u", W1H, T0),
            oracle_window([(T0, x) for x in xs], W1H, T0),
            scale=sum(map(abs, xs)),
        )

    async def test_int_window_sums_stay_exact_beyond_2_pow_53(self, store: StateStore) -> None:
        f = fqn()
        await store.window_add(f, "u", W30D, [(T0 - DAY, 2**53 + 1), (T0, 2**61 + 1)], T0)
        got = await store.window_read(f, "u", W30D, T0)
        assert got == (2**53 + 2**61 + 2, 2, 2**53 + 1, 2**61 + 1)
        assert type(got[0]) is int

    async def test_out_of_order_events_give_the_same_window(self, store: StateStore) -> None:
        f, g = fqn(), fqn()
        events = [(T0 - k * 7 * MINUTE, k) for k in range(8)]
        await store.window_add(f, "u", W1H, events, T0)
        for event in reversed(events):
            await store.window_add(g, "u", W1H, [event], T0)
        want = oracle_window(events, W1H, T0)
        assert await store.window_read(f, "u", W1H, T0) == want
        assert await store.window_read(g, "u", W1H, T0) == want

    async def test_late_events_are_dropped_and_not_counted(self, store: StateStore) -> None:
        f = fqn()
        oldest = (T0 // MINUTE - 59) * MINUTE  # first instant of the window's oldest bucket
        events = [(oldest, 1), (oldest - 1, 100), (T0 - DAY, 1000)]
        assert await store.window_add(f, "u", W1H, events, T0) == 1
        assert await store.window_read(f, "u", W1H, T0) == (1, 1, 1, 1)

    @pytest.mark.parametrize("ahead", [1, 30 * SECOND, 5 * MINUTE])
    async def test_future_event_counts_once_query_time_reaches_it(
        self, store: StateStore, ahead: int
    ) -> None:
        f, t = fqn(), T0 + ahead
        assert await store.window_add(f, "u", W1H, [(T0, 1), (t, 10)], T0) == 2
        assert await store.window_read(f, "u", W1H, T0) == (1, 1, 1, 1)
        assert await store.window_read(f, "u", W1H, t - 1) == (1, 1, 1, 1)
        assert await store.window_read(f, "u", W1H, t) == (11, 2, 1, 10)
        assert await store.window_read(f, "u", W1H, t + MINUTE) == (11, 2, 1, 10)

    async def test_oldest_bucket_counts_while_the_length_is_not_a_multiple_of_g(
        self, store: StateStore
    ) -> None:
        """n = ceil(W / g): a 59min + 1µs window still spans 60 one-minute buckets."""
        f, w = fqn(), WindowSpec(granularity=MINUTE, over=59 * MINUTE + 1)
        now = T0 + 30 * SECOND
        oldest = T0 - 59 * MINUTE  # first instant of the oldest of the 60 buckets
        assert await store.window_add(f, "u", w, [(oldest, 1), (oldest - 1, 5)], now) == 1
        await store.window_add(f, "u", w, [(now, 2)], now + SECOND)
        assert await store.window_read(f, "u", w, now + SECOND) == (3, 2, 1, 2)
        assert await store.window_read(f, "u", w, T0 + MINUTE) == (2, 1, 2, 2)

    async def test_window_forgets_events_as_it_slides_and_buckets_expire(
        self, store: StateStore
    ) -> None:
        f = fqn()
        await store.window_add(f, "u", W1H, [(T0, 1)], T0)
        bucket_end = (T0 // MINUTE + 1) * MINUTE
        assert await store.window_read(f, "u", W1H, bucket_end + 59 * MINUTE - 1) == (1, 1, 1, 1)
        assert await store.window_read(f, "u", W1H, bucket_end + 59 * MINUTE) == (0, 0, None, None)
        later = T0 + 30 * DAY
        assert await store.window_read(f, "u", W1H, later) == (0, 0, None, None)
        await store.window_add(f, "u", W1H, [(later, 5)], later)
        assert await store.window_read(f, "u", W1H, later) == (5, 1, 5, 5)

    async def test_window_add_accumulates_batches(self, store: StateStore) -> None:
        f, everything = fqn(), []
        for k in range(5):
            batch = [(T0 - (k * 10 + i) * SECOND, k * 10 + i) for i in range(10)]
            everything += batch
            assert await store.window_add(f, "u", W1H, batch, T0) == 10
        assert await store.window_read(f, "u", W1H, T0) == oracle_window(everything, W1H, T0)

    async def test_long_window_equals_the_naive_sum(self, store: StateStore) -> None:
        """30 days at 1 minute (5 levels, pre-merged buckets), read at many alignments."""
        f = fqn()
        start = T0 - 30 * DAY
        events = [(start + k * 13 * MINUTE + k % 60 * SECOND, k % 97 - 40) for k in range(3400)]
        added = 0
        for i in range(0, len(events), 500):
            added += await store.window_add(f, "u", W30D, events[i : i + 500], T0)
        assert added == len(events) - 1  # the first one is just out of the window
        seen = [(t, x, T0) for t, x in events]
        for at in [T0 + k * 997 * SECOND for k in range(20)]:
            got = await store.window_read(f, "u", W30D, at)
            assert got == oracle_window(seen, W30D, at), at

    async def test_read_batch_mixes_value_and_window_reads_in_order(
        self, store: StateStore
    ) -> None:
        f, g = fqn(), fqn()
        await store.write(f, "u", WriteOp.SET, "x", T0, WritePolicy(), T0)
        await store.window_add(g, "u", W1H, [(T0, 4)], T0)
        reads: list[ValueRead | WindowRead] = [
            WindowRead(g, "u", W1H),
            ValueRead(f, "u", 1),
            ValueRead(f, "nobody"),
            WindowRead(g, "nobody", W1H),
        ]
        got = await store.read_batch(reads, T0)
        assert got == [(4, 1, 4, 4), [Stamped("x", T0), None], [None], (0, 0, None, None)]

    async def test_apply_mixes_writes_and_window_adds_in_order(self, store: StateStore) -> None:
        f, g = fqn(), fqn()
        p = WritePolicy()
        got = await store.apply(
            [
                ValueWrite(f, "u", WriteOp.SET, 1, T0 + 5, p),
                WindowAdd(g, "u", W1H, [(T0, 2), (T0 - DAY, 3), (T0 + 1, 4)]),
                ValueWrite(f, "u", WriteOp.SET, 2, T0, p),
                ValueWrite(f, "u", WriteOp.INCR, 3, T0 + 5, p),
            ],
            T0,
        )
        assert got == [Stamped(1, T0 + 5), 2, None, Stamped(4, T0 + 5)]
        assert await store.read(f, "u", 0, T0) == [Stamped(4, T0 + 5)]
        assert await store.window_read(g, "u", W1H, T0 + 1) == (6, 2, 2, 4)

    async def test_close_is_idempotent(self, store: StateStore) -> None:
        await store.close()
        await store.close()

    # -- property -----------------------------------------------------------------------------

    @settings(
        max_examples=60,
        deadline=None,
        # The store fixture is function scoped (fresh names per example instead), and every
        # backend's subclass runs this same method: both are intended.
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(scenario=scenarios())
    async def test_windows_match_the_naive_oracle(
        self, store: StateStore, scenario: Scenario
    ) -> None:
        """Random streams (late, out-of-order, future-dated events), random query times."""
        f, window = fqn(), scenario.window
        g, n = window.granularity, -(-window.over // window.granularity)
        now = scenario.start
        seen: list[tuple[int, Any, int]] = []
        for step in scenario.steps:
            now += step.advance
            if step.events is None:
                if step.batch_read:
                    (got,) = await store.read_batch([WindowRead(f, "u", window)], now)
                    assert isinstance(got, tuple)
                else:
                    got = await store.window_read(f, "u", window, now)
                scale = oracle_window([(t, abs(x), a) for t, x, a in seen], window, now)[0]
                assert_window(got, oracle_window(seen, window, now), scale)
                continue
            batch = [(now + offset, x) for offset, x in step.events]
            not_late = [t for t, _ in batch if t // g >= now // g - n + 1]  # SPEC 4.3
            assert await store.window_add(f, "u", window, batch, now) == len(not_late)
            seen += [(t, x, now) for t, x in batch]

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.differing_executors,
        ],
    )
    @given(
        writes=st.lists(
            st.tuples(st.sampled_from([WriteOp.SET, WriteOp.INCR]), ints, st.integers(-5, 5)),
            min_size=1,
            max_size=30,
        )
    )
    async def test_latest_event_time_wins_under_any_arrival_order(
        self, store: StateStore, writes: list[tuple[WriteOp, int, int]]
    ) -> None:
        """Random SET/INCR with random (often older) event times against a naive model."""
        f, policy = fqn(), WritePolicy(versions=2)
        model: list[Stamped] = []  # current first
        for now, (op, x, offset) in enumerate(writes, start=T0):
            ts = T0 + offset
            got = await store.write(f, "u", op, x, ts, policy, now)
            if model and ts < model[0].timestamp:
                assert got is None
            else:
                value = x if op is WriteOp.SET or not model else model[0].value + x
                model = [Stamped(value, ts), *model][:3]
                assert got == model[0]
        assert await store.read(f, "u", 2, T0 + len(writes)) == model + [None] * (3 - len(model))
