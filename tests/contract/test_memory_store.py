"""The in-memory reference store: the conformance suite, plus what only memory can show (that
expired state is actually released, measured with tracemalloc)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import pytest

from raptor.api.windows import WindowSpec
from raptor.state import StateStore, WindowColumnRead, WriteOp, WritePolicy
from raptor.state.memory import MemoryStateStore
from raptor.testing import StateStoreConformance

MINUTE = 60_000_000
HOUR = 60 * MINUTE
T0 = 1_717_200_000_000_000  # 2024-06-01T00:00:00Z
W1H = WindowSpec(granularity=MINUTE, over=HOUR, grace=5 * MINUTE)
AFTER_EXPIRY = T0 + 2 * HOUR + 10 * MINUTE  # past every bucket of an hour fed from T0


class TestMemoryStateStore(StateStoreConformance):
    @pytest.fixture
    async def store(self) -> AsyncIterator[StateStore]:
        store = MemoryStateStore()
        yield store
        await store.close()


@pytest.fixture
def traced() -> Iterator[Callable[[Callable[[], Awaitable[object]]], Awaitable[int]]]:
    """``await traced(step)``: bytes still allocated after ``step`` (negative when it freed
    memory). Tracing runs for the whole test, so frees of earlier allocations count."""
    tracemalloc.start()

    async def measure(step: Callable[[], Awaitable[object]]) -> int:
        before = tracemalloc.get_traced_memory()[0]
        await step()
        return tracemalloc.get_traced_memory()[0] - before

    yield measure
    tracemalloc.stop()


Traced = Callable[[Callable[[], Awaitable[object]]], Awaitable[int]]


async def fill_hour(store: MemoryStateStore, entities: int) -> None:
    for e in range(entities):
        events = [(T0 + m * MINUTE, 1000 + m) for m in range(60)]
        await store.window_add("ns.clicks", f"u{e}", W1H, events, T0 + HOUR)


async def test_idle_window_states_are_released_after_their_expiry(traced: Traced) -> None:
    store = MemoryStateStore()
    grown = await traced(lambda: fill_hour(store, 300))
    assert grown > 300 * 5_000  # sanity: each full hour costs several KB

    async def later_write() -> None:  # any write drives the sweep; reads never delete
        await store.write(
            "ns.other", "x", WriteOp.SET, 1, AFTER_EXPIRY, WritePolicy(), AFTER_EXPIRY
        )

    freed = await traced(later_write)
    assert freed < -0.9 * grown
    assert await store.window_read("ns.clicks", "u0", W1H, AFTER_EXPIRY) == (0, 0, None, None)


async def test_reads_alone_release_nothing(traced: Traced) -> None:
    store = MemoryStateStore()
    await fill_hour(store, 50)
    assert await store.window_read("ns.clicks", "u0", W1H, AFTER_EXPIRY) == (0, 0, None, None)
    assert await traced(lambda: store.window_read("ns.clicks", "u1", W1H, AFTER_EXPIRY)) >= 0


async def test_a_busy_entity_keeps_only_the_buckets_its_window_needs(traced: Traced) -> None:
    store = MemoryStateStore()

    async def feed(hours: int, start: int) -> None:
        for m in range(start, start + hours * 60):
            t = T0 + m * MINUTE
            await store.window_add("ns.clicks", "u", W1H, [(t, 10**6 + m)], t)

    first = await traced(lambda: feed(2, 0))
    more = await traced(lambda: feed(10, 120))
    assert first > 0
    assert abs(more) < 0.1 * first  # ten more hours, about the same memory
    got = await store.window_read("ns.clicks", "u", W1H, T0 + 12 * HOUR - MINUTE)
    assert got[1] == 60


async def test_expired_values_are_released_over_a_few_writes(traced: Traced) -> None:
    store = MemoryStateStore()
    p = WritePolicy(staleness=MINUTE)

    async def fill() -> None:
        for e in range(2500):  # more than one sweep's budget
            value = [e * 10**6 + i for i in range(50)]  # heavy next to the dict slots
            await store.write("ns.score", f"u{e}", WriteOp.SET, value, T0, p, T0)

    grown = await traced(fill)
    later = T0 + 2 * MINUTE

    async def writes() -> None:
        for i in range(3):
            await store.write("ns.other", "x", WriteOp.SET, i, later, p, later)

    freed = await traced(writes)
    assert freed < -0.9 * grown  # dict/heap capacity is kept (CPython never shrinks on delete)
    assert await store.read("ns.score", "u0", 0, later) == [None]


async def test_values_that_never_expire_are_kept() -> None:
    store = MemoryStateStore()
    await store.write("ns.name", "u", WriteOp.SET, "kept", T0, WritePolicy(), T0)
    far = T0 + 10_000 * HOUR
    await store.write("ns.other", "x", WriteOp.SET, 1, far, WritePolicy(staleness=1), far)
    await store.write("ns.other", "y", WriteOp.SET, 1, far + 5, WritePolicy(), far + 5)
    assert (await store.read("ns.name", "u", 0, far + 5))[0] is not None


# -- the memo of merged windows (memory_windows) ------------------------------------------------


async def test_a_window_read_sees_an_add_made_within_the_same_bucket() -> None:
    store = MemoryStateStore()
    await store.window_add("ns.w", "u", W1H, [(T0, 1)], T0)
    column = [WindowColumnRead("ns.w", ["u", "v"], W1H)]
    assert await store.read_columns(column, T0 + 1) == [[(1, 1, 1, 1), (0, 0, None, None)]]
    await store.window_add("ns.w", "u", W1H, [(T0 + 2, 5)], T0 + 2)
    await store.window_add("ns.w", "v", W1H, [(T0 + 2, 7)], T0 + 2)
    assert await store.window_read("ns.w", "u", W1H, T0 + 3) == (6, 2, 1, 5)
    assert await store.read_columns(column, T0 + 3) == [[(6, 2, 1, 5), (7, 1, 7, 7)]]


async def test_a_future_event_coming_due_within_the_bucket_is_counted() -> None:
    store = MemoryStateStore()
    await store.window_add("ns.w", "u", W1H, [(T0, 1), (T0 + 10, 10)], T0)
    assert await store.window_read("ns.w", "u", W1H, T0 + 9) == (1, 1, 1, 1)
    assert await store.window_read("ns.w", "u", W1H, T0 + 10) == (11, 2, 1, 10)
    assert await store.window_read("ns.w", "u", W1H, T0 + 11) == (11, 2, 1, 10)


async def test_a_read_of_an_earlier_bucket_after_a_later_one_is_exact() -> None:
    store = MemoryStateStore()
    events = [(T0 - 20 * MINUTE, 1), (T0 + 30 * MINUTE, 2)]
    await store.window_add("ns.w", "u", W1H, events, T0 + 30 * MINUTE)
    late = T0 + 45 * MINUTE  # the first event has left the window
    assert await store.window_read("ns.w", "u", W1H, late) == (2, 1, 2, 2)
    assert await store.window_read("ns.w", "u", W1H, T0 + 30 * MINUTE) == (3, 2, 1, 2)
    assert await store.window_read("ns.w", "u", W1H, late) == (2, 1, 2, 2)


async def test_a_swept_window_state_reads_empty() -> None:
    store = MemoryStateStore()
    await store.window_add("ns.w", "u", W1H, [(T0, 1)], T0)
    assert await store.window_read("ns.w", "u", W1H, T0 + HOUR - 1) == (1, 1, 1, 1)
    await store.write("ns.x", "x", WriteOp.SET, 1, AFTER_EXPIRY, WritePolicy(), AFTER_EXPIRY)
    assert "u" not in store._window_column("ns.w", W1H).states
    assert await store.window_read("ns.w", "u", W1H, AFTER_EXPIRY) == (0, 0, None, None)


# -- few objects for the garbage collector -------------------------------------------------------


async def test_quiet_state_is_not_tracked_by_the_garbage_collector() -> None:
    """Stored values and window buckets leave the collector's lists (a full collection walks
    what is tracked, pausing the event loop), leaving about one object per window state."""
    store = MemoryStateStore()
    p = WritePolicy(staleness=HOUR, versions=2)
    for e in range(100):
        await store.write("ns.v", f"u{e}", WriteOp.SET, 1.5, T0, p, T0)
        await store.write("ns.v", f"u{e}", WriteOp.SET, 2.5, T0 + 1, p, T0 + 1)
        await store.window_add("ns.w", f"u{e}", W1H, [(T0, 1.5), (T0 + HOUR, 2)], T0)
    gc.collect()
    gc.collect()
    assert not any(gc.is_tracked(x) for x in store._current["ns.v"].values())
    assert not any(gc.is_tracked(x) for x in store._older["ns.v"].values())
    assert not gc.is_tracked(store._current["ns.v"])
    for state in store._window_column("ns.w", W1H).states.values():
        assert not any(gc.is_tracked(level) for level in state.levels)
