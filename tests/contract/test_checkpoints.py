"""Contract of :class:`raptor.state.CheckpointStore` — the same tests for memory and Redis
(standalone, and Redis Cluster for the per-slot path)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from raptor.api.timeutil import MINUTE, SECOND
from raptor.api.windows import WindowSpec
from raptor.state import (
    CheckpointStore,
    Positioned,
    StateStore,
    ValueWrite,
    WindowAdd,
    WriteOp,
    position_key,
)
from raptor.state.memory import MemoryStateStore
from raptor.testing import FakeClock

sys.path.insert(0, str(Path(__file__).parent.parent))
from servers import RedisClusterServers

W = WindowSpec(granularity=MINUTE, over=60 * MINUTE)
SRC = "default.clicks"


@pytest.fixture(scope="module")
def redis_cluster() -> Iterator[RedisClusterServers]:
    with RedisClusterServers(3) as cluster:
        yield cluster


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        yield MemoryStateStore()
        return
    from raptor.state.redis import RedisStateStore

    if request.param == "redis":
        url = request.getfixturevalue("redis_url")
    else:
        cluster = request.getfixturevalue("redis_cluster")
        import redis

        for s in cluster.servers:
            with redis.Redis(host="127.0.0.1", port=s.port) as c:
                c.flushall()
        url = cluster.url
    s = RedisStateStore.from_url(url)
    try:
        yield s
    finally:
        await s.close()


def ck(store: StateStore) -> CheckpointStore:
    assert isinstance(store, CheckpointStore)
    return store


def adds(partition: str, first: int, last: int, t: int, entity: str = "u1") -> list[Positioned]:
    """One window event of value ``i`` at position ``i`` for i in [first, last]."""
    return [
        Positioned(partition, str(i), WindowAdd("default.amount", entity, W, ((t, i),)))
        for i in range(first, last + 1)
    ]


async def window(store: StateStore, t: int, entity: str = "u1") -> tuple[int, int]:
    s, c, _, _ = await store.window_read("default.amount", entity, W, t)
    return s, c


class TestCheckpointStore:
    async def test_writes_are_applied_once_and_positions_recorded(self, store: StateStore) -> None:
        now = FakeClock().now_micros()
        flags = await ck(store).apply_checkpointed(adds("p0", 1, 5, now), now, SRC, {"p0": "5"})
        assert flags == [True] * 5
        assert await window(store, now) == (15, 5)
        assert await ck(store).positions(SRC) == {"p0": "5"}

    async def test_a_replayed_batch_is_skipped(self, store: StateStore) -> None:
        now = FakeClock().now_micros()
        batch = adds("p0", 1, 5, now)
        await ck(store).apply_checkpointed(batch, now, SRC, {"p0": "5"})
        flags = await ck(store).apply_checkpointed(batch, now + SECOND, SRC, {"p0": "5"})
        assert flags == [False] * 5
        assert await window(store, now + SECOND) == (15, 5)

    async def test_an_overlapping_batch_applies_only_what_is_new(self, store: StateStore) -> None:
        now = FakeClock().now_micros()
        await ck(store).apply_checkpointed(adds("p0", 1, 3, now), now, SRC, {"p0": "3"})
        flags = await ck(store).apply_checkpointed(adds("p0", 1, 6, now), now, SRC, {"p0": "6"})
        assert flags == [False, False, False, True, True, True]
        assert await window(store, now) == (21, 6)
        assert await ck(store).positions(SRC) == {"p0": "6"}

    async def test_positions_compare_as_numbers(self, store: StateStore) -> None:
        now = FakeClock().now_micros()
        await ck(store).apply_checkpointed(adds("p0", 9, 9, now), now, SRC, {"p0": "9"})
        flags = await ck(store).apply_checkpointed(adds("p0", 10, 11, now), now, SRC, {"p0": "11"})
        assert flags == [True, True]
        assert await window(store, now) == (30, 3)
        assert sorted(["100", "9", "10"], key=position_key) == ["9", "10", "100"]

    async def test_partitions_and_sources_are_fenced_independently(self, store: StateStore) -> None:
        now = FakeClock().now_micros()
        await ck(store).apply_checkpointed(adds("p0", 1, 3, now), now, SRC, {"p0": "3"})
        other_partition = await ck(store).apply_checkpointed(adds("p1", 1, 3, now), now, SRC, {})
        other_source = await ck(store).apply_checkpointed(adds("p0", 1, 3, now), now, "x.y", {})
        assert other_partition == [True] * 3
        assert other_source == [True] * 3
        assert await window(store, now) == (18, 9)

    async def test_each_entity_is_fenced_on_its_own(self, store: StateStore) -> None:
        """A crash may leave a batch half-written: the replay completes the other half."""
        now = FakeClock().now_micros()
        half = adds("p0", 1, 4, now, "u1")
        await ck(store).apply_checkpointed(half, now, SRC, {})  # u2's part never landed
        batch = half + adds("p0", 1, 4, now, "u2")
        flags = await ck(store).apply_checkpointed(batch, now, SRC, {"p0": "4"})
        assert flags == [False] * 4 + [True] * 4
        assert await window(store, now, "u1") == (10, 4)
        assert await window(store, now, "u2") == (10, 4)

    async def test_many_entities_with_replays_among_them(self, store: StateStore) -> None:
        """Beyond one script call's worth of groups (Redis takes up to 64 per call): every
        group's skipped events come back to the right writes."""
        now = FakeClock().now_micros()
        entities = [f"e{k}" for k in range(150)]
        done = [w for e in entities[::3] for w in adds("p0", 1, 2, now, e)]
        await ck(store).apply_checkpointed(done, now, SRC, {})
        batch = [w for e in entities for w in adds("p0", 1, 3, now, e)]
        flags = await ck(store).apply_checkpointed(batch, now, SRC, {"p0": "3"})
        for k in range(150):
            replayed = k % 3 == 0
            assert flags[3 * k : 3 * k + 3] == [not replayed, not replayed, True]
            assert await window(store, now, entities[k]) == (6, 3)

    async def test_value_writes_are_fenced(self, store: StateStore) -> None:
        now = FakeClock().now_micros()
        appends = [
            Positioned(
                "p0", str(i), ValueWrite("default.pages", "u1", WriteOp.APPEND, f"p{i}", now)
            )
            for i in (1, 2, 3)
        ]
        await ck(store).apply_checkpointed(appends[:2], now, SRC, {"p0": "2"})
        flags = await ck(store).apply_checkpointed(appends, now, SRC, {"p0": "3"})
        assert flags == [False, False, True]
        (current,) = await store.read("default.pages", "u1", 0, now)
        assert current is not None
        assert current.value == ["p1", "p2", "p3"]

    async def test_future_events_are_fenced_too(self, store: StateStore) -> None:
        now = FakeClock().now_micros()
        later = now + 30 * SECOND
        batch = adds("p0", 1, 2, later) + adds("p0", 3, 3, now)
        assert await ck(store).apply_checkpointed(batch, now, SRC, {}) == [True] * 3
        assert await ck(store).apply_checkpointed(batch, now, SRC, {}) == [False] * 3
        assert await window(store, later) == (6, 3)

    async def test_recorded_positions_never_move_backwards(self, store: StateStore) -> None:
        now = FakeClock().now_micros()
        await ck(store).apply_checkpointed([], now, SRC, {"p0": "20", "p1": "3"})
        await ck(store).apply_checkpointed([], now, SRC, {"p0": "7", "p1": "4"})
        assert await ck(store).positions(SRC) == {"p0": "20", "p1": "4"}
        assert await ck(store).positions("nobody") == {}

    async def test_late_events_are_applied_as_no_ops(self, store: StateStore) -> None:
        now = FakeClock().now_micros()
        old = now - 2 * 60 * MINUTE
        flags = await ck(store).apply_checkpointed(adds("p0", 1, 2, old), now, SRC, {"p0": "2"})
        assert flags == [True, True]
        assert await window(store, now) == (0, 0)
