"""raptor.testing: the fake clock, the naive window oracle, and proof that the conformance suite
fails stores that break the contract (each mutant must be caught by the test meant for it)."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta, timezone

import pytest

from raptor.api.windows import WindowSpec
from raptor.testing import FakeClock, oracle_window

T0 = 1_717_200_000_000_000  # 2024-06-01T00:00:00Z


# -- FakeClock ----------------------------------------------------------------------------------


def test_fake_clock_starts_at_a_fixed_aware_utc_instant() -> None:
    clock = FakeClock()
    assert clock.now() == datetime(2024, 6, 1, tzinfo=UTC)
    assert clock.now().utcoffset() == timedelta(0)
    assert clock.now_micros() == T0


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock()
    assert clock.now() == clock.now()
    clock.advance(1.5)
    assert clock.now_micros() == T0 + 1_500_000
    clock.advance(micros=7)
    clock.advance(0.25, micros=1)
    assert clock.now_micros() == T0 + 1_750_008
    assert clock.now() == datetime(2024, 6, 1, 0, 0, 1, 750_008, tzinfo=UTC)


def test_fake_clock_refuses_to_advance_backwards() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError, match="set"):
        clock.advance(-1)
    assert clock.now_micros() == T0


def test_fake_clock_set_takes_any_offset_naive_as_utc_or_micros() -> None:
    clock = FakeClock(0)
    assert clock.now() == datetime(1970, 1, 1, tzinfo=UTC)
    clock.set(datetime(2024, 1, 1, 2, tzinfo=timezone(timedelta(hours=2))))
    assert clock.now() == datetime(2024, 1, 1, tzinfo=UTC)
    assert clock.now().tzinfo is UTC
    clock.set(datetime(2023, 5, 1))
    assert clock.now() == datetime(2023, 5, 1, tzinfo=UTC)
    clock.set(T0)
    assert clock.now_micros() == T0


def test_fake_clock_has_the_engine_clock_surface() -> None:
    public = {name for name in dir(FakeClock) if not name.startswith("_")}
    assert {"now", "now_micros"} <= public
    assert public == {"now", "now_micros", "advance", "set"}


# -- oracle_window ------------------------------------------------------------------------------

W = WindowSpec(granularity=10, over=25)  # n = 3 buckets of 10


def test_oracle_counts_the_current_bucket_and_the_n_minus_1_before_it() -> None:
    events = [(t, t) for t in (9, 10, 19, 20, 29, 30, 35)]
    # at 35: buckets 1..3 -> 10, 19, 20, 29, 30, 35 (not 9); t <= 35
    assert oracle_window(events, W, 35) == (143, 6, 10, 35)
    assert oracle_window(events, W, 34) == (108, 5, 10, 30)


def test_oracle_counts_a_future_event_only_once_at_reaches_it() -> None:
    events = [(5, 1), (8, 2)]
    assert oracle_window(events, W, 7) == (1, 1, 1, 1)
    assert oracle_window(events, W, 8) == (3, 2, 1, 2)


def test_oracle_drops_events_late_when_added() -> None:
    # added at now=40 (buckets 2..4): an event at 19 (bucket 1) was late and never counts.
    assert oracle_window([(19, 1, 40), (20, 2, 40)], W, 40) == (2, 1, 2, 2)
    assert oracle_window([(19, 1, 25)], W, 25) == (1, 1, 1, 1)
    # without an arrival time, nothing is late
    assert oracle_window([(19, 1)], W, 25) == (1, 1, 1, 1)


def test_oracle_of_nothing_is_the_empty_partial() -> None:
    assert oracle_window([], W, 100) == (0, 0, None, None)
    assert oracle_window([(0, 5)], W, 100) == (0, 0, None, None)


def test_oracle_handles_negative_times_with_floor_buckets() -> None:
    # b(-1) = -1; at -1 the window is buckets -3..-1, i.e. t in [-30, -1]
    assert oracle_window([(-31, 1), (-30, 2), (-1, 4), (0, 8)], W, -1) == (6, 2, 2, 4)


# -- the suite catches broken stores ------------------------------------------------------------

MUTANTS = """
    import pytest
    from raptor.api.windows import WindowSpec
    from raptor.state import WritePolicy
    from raptor.state.memory import MemoryStateStore
    from raptor.testing import StateStoreConformance

    class LatestWriteAlwaysWins(MemoryStateStore):
        def _write(self, fqn, entity, op, value, timestamp, policy, now):
            got = super()._write(fqn, entity, op, value, timestamp, policy, now)
            if got is None:
                self._current[fqn].pop(entity)
                self._older.get(fqn, {}).pop(entity, None)
                got = super()._write(fqn, entity, op, value, timestamp, policy, now)
            return got

    class ForgetsVersions(MemoryStateStore):
        def _write(self, fqn, entity, op, value, timestamp, policy, now):
            policy = WritePolicy(staleness=policy.staleness)
            return super()._write(fqn, entity, op, value, timestamp, policy, now)

    class ExpiresOneMicrosecondEarly(MemoryStateStore):
        def _read(self, fqn, entity, versions, now):
            return super()._read(fqn, entity, versions, now + 1)

    class IgnoresEntities(MemoryStateStore):
        def _read(self, fqn, entity, versions, now):
            return super()._read(fqn, "", versions, now)

    class CountsFutureEventsAtOnce(MemoryStateStore):
        def _window_add(self, fqn, entity, window, events, now):
            events = [(min(t, now), x) for t, x in events]
            return super()._window_add(fqn, entity, window, events, now)

    class KeepsLateEvents(MemoryStateStore):
        def _window_add(self, fqn, entity, window, events, now):
            first = (now // window.granularity - window.buckets + 1) * window.granularity
            events = [(max(t, first), x) for t, x in events]
            return super()._window_add(fqn, entity, window, events, now)

    class ReadsOneBucketShort(MemoryStateStore):
        def _window_read(self, fqn, entity, window, at):
            state = self._window_column(fqn, window).states.get(entity)
            shorter = WindowSpec(window.granularity, max(window.over - window.granularity, 1))
            if state is None or shorter.levels != window.levels:
                return super()._window_read(fqn, entity, window, at)
            short = self._window_column(fqn, shorter)
            short.states[entity] = state
            short.memo.pop(entity, None)
            return super()._window_read(fqn, entity, shorter, at)

    class MakesFloatSums(MemoryStateStore):
        def _window_read(self, fqn, entity, window, at):
            s, c, mn, mx = super()._window_read(fqn, entity, window, at)
            return (float(s), c, mn, mx)

    class Reference(MemoryStateStore):  # the control: the real store must fail nothing
        pass

    for _mutant in [
        Reference,
        LatestWriteAlwaysWins, ForgetsVersions, ExpiresOneMicrosecondEarly, IgnoresEntities,
        CountsFutureEventsAtOnce, KeepsLateEvents, ReadsOneBucketShort, MakesFloatSums,
    ]:
        class _Suite(StateStoreConformance):
            @pytest.fixture
            async def store(self, _cls=_mutant):
                yield _cls()
        globals()["Test" + _mutant.__name__] = type("Test" + _mutant.__name__, (_Suite,), {})
    del _Suite
"""

CAUGHT_BY = {
    "LatestWriteAlwaysWins": [
        "test_older_write_is_ignored_without_shifting_versions",
        "test_latest_event_time_wins_under_any_arrival_order",
    ],
    "ForgetsVersions": [
        "test_latest_event_time_wins_under_any_arrival_order",
        "test_versions_shift_keeping_their_own_timestamps",
        "test_version_expires_i_times_version_ttl_after_the_shifting_write",
    ],
    "ExpiresOneMicrosecondEarly": [
        "test_current_value_is_usable_until_staleness_after_its_timestamp",
        "test_version_expires_i_times_version_ttl_after_the_shifting_write",
    ],
    "IgnoresEntities": ["test_features_and_entities_are_independent"],
    "CountsFutureEventsAtOnce": [
        "test_future_event_counts_once_query_time_reaches_it",
        "test_windows_match_the_naive_oracle",
    ],
    "KeepsLateEvents": [
        "test_late_events_are_dropped_and_not_counted",
        "test_windows_match_the_naive_oracle",
    ],
    "ReadsOneBucketShort": [
        "test_long_window_equals_the_naive_sum",
        "test_windows_match_the_naive_oracle",
    ],
    "MakesFloatSums": [
        "test_window_gives_every_function",
        "test_int_window_sums_stay_exact_beyond_2_pow_53",
        "test_windows_match_the_naive_oracle",
    ],
}


INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = function
"""

CONFTEST = """
from hypothesis import Phase, settings

settings.register_profile("fast", phases=[Phase.generate], database=None)
settings.load_profile("fast")
"""


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, set[str]]]:
    """One pytest subprocess runs, against every mutant, the suite's tests meant to catch it,
    and all of those against the control (no shrinking, fixed seed).
    Returns ``{"FAILED" | "PASSED": {mutant: {test names}}}``."""
    root = tmp_path_factory.mktemp("mutants")
    (root / "pytest.ini").write_text(INI)
    (root / "conftest.py").write_text(CONFTEST)
    (root / "test_mutants.py").write_text(textwrap.dedent(MUTANTS))
    every = " or ".join(sorted({name for names in CAUGHT_BY.values() for name in names}))
    select = " or ".join(
        [f"(Test{m} and ({' or '.join(names)}))" for m, names in CAUGHT_BY.items()]
        + [f"(TestReference and ({every}))"]
    )
    args = ["-q", "-rfp", "-p", "no:cacheprovider", "--hypothesis-seed=0", "-k", select]
    done = subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    found: dict[str, dict[str, set[str]]] = {"FAILED": {}, "PASSED": {}}
    for line in done.stdout.splitlines():
        m = re.match(r"(FAILED|PASSED) test_mutants\.py::Test(\w+)::(test_\w+)", line)
        if m:
            found[m.group(1)].setdefault(m.group(2), set()).add(m.group(3))
    assert found["PASSED"], done.stdout[-3000:] + done.stderr[-3000:]
    return found


@pytest.mark.slow
def test_conformance_suite_passes_the_unbroken_reference(
    outcomes: dict[str, dict[str, set[str]]],
) -> None:
    every = {name for names in CAUGHT_BY.values() for name in names}
    assert outcomes["FAILED"].get("Reference", set()) == set()
    assert outcomes["PASSED"]["Reference"] == every


@pytest.mark.slow
@pytest.mark.parametrize("mutant", sorted(CAUGHT_BY))
def test_conformance_suite_catches_a_broken_store(
    mutant: str, outcomes: dict[str, dict[str, set[str]]]
) -> None:
    missing = set(CAUGHT_BY[mutant]) - outcomes["FAILED"].get(mutant, set())
    assert not missing, f"{mutant} was not caught by {sorted(missing)}"
