"""The Redis store against a private real redis-server: the whole conformance suite, plus what
only Redis can show (key layout and hash slots, real TTLs, script cache, Lua-side type errors,
bit-identical windows against the memory store)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis as sync_redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from raptor.api.windows import WindowSpec
from raptor.errors import ValueTypeError
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
from raptor.state.memory import MemoryStateStore
from raptor.state.redis import RedisStateStore
from raptor.testing import StateStoreConformance
from servers import RedisClusterServers, RedisSentinel

SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
T0 = 1_717_200_000_000_000  # 2024-06-01T00:00:00Z
W1H = WindowSpec(granularity=MINUTE, over=HOUR)


class TestRedisStateStore(StateStoreConformance):
    @pytest.fixture
    async def store(self, redis_url: str) -> AsyncIterator[StateStore]:
        store = RedisStateStore.from_url(redis_url)
        yield store
        await store.close()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[RedisStateStore]:
    store = RedisStateStore.from_url(redis_url, ttl_floor=0)
    yield store
    await store.close()


@pytest.fixture
async def floored(redis_url: str) -> AsyncIterator[RedisStateStore]:
    """The default 1 s TTL floor: windows of a few µs must not vanish between two calls."""
    store = RedisStateStore.from_url(redis_url)
    yield store
    await store.close()


@pytest.fixture
def raw(redis_url: str) -> sync_redis.Redis:
    return sync_redis.Redis.from_url(redis_url)


async def fill(store: StateStore, fqn: str, entities: list[str]) -> None:
    p = WritePolicy(staleness=HOUR, versions=2, version_ttl=MINUTE)
    for e in entities:
        await store.write(fqn, e, WriteOp.SET, [1, 2], T0, p, T0)
        await store.write(fqn, e, WriteOp.APPEND, 3, T0 + 1, p, T0 + 1)
        await store.window_add(fqn, e, W1H, [(T0, 1), (T0 + MINUTE, 2)], T0 + 1)


# -- key layout ----------------------------------------------------------------------------------


async def test_every_key_contains_the_fqn_and_one_entity_uses_one_slot(
    store: RedisStateStore, raw: sync_redis.Redis
) -> None:
    entities = [f"user{i}" for i in range(40)]
    await fill(store, "shop.clicks", entities)
    keys = [k.decode() for k in raw.scan_iter(count=1000)]
    assert len(keys) == 3 * len(entities)  # values, buckets, future events per entity
    assert all("shop.clicks" in k for k in keys)
    for e in entities:
        mine = [k for k in keys if f"|{e}}}" in k]
        assert sorted(mine) == sorted(
            [store.value_key("shop.clicks", e), *store.window_keys("shop.clicks", e, W1H)]
        )
        assert len({key_slot(k.encode()) for k in mine}) == 1
    slots = {key_slot(k.encode()) for k in keys}
    assert len(slots) > 30  # a feature is spread over the cluster, not pinned to one slot


async def test_documented_key_examples_hold(store: RedisStateStore) -> None:
    assert store.value_key("shop.clicks", "u42") == "raptor:{shop.clicks|u42}:v"
    assert store.window_keys("shop.clicks", "u42", W1H) == (
        "raptor:{shop.clicks|u42}:w:1m:1h",
        "raptor:{shop.clicks|u42}:wf:1m:1h",
    )
    odd = WindowSpec(granularity=SECOND, over=90 * SECOND, grace=0)
    assert store.window_keys("a.b", "", odd)[0] == "raptor:{a.b|}:w:1s:1m30s:0s"


async def test_same_key_names_and_values_in_two_features_stay_independent(
    store: RedisStateStore, raw: sync_redis.Redis
) -> None:
    p = WritePolicy()
    for fqn in ("a.score", "b.score"):
        await store.write(fqn, "u1", WriteOp.INCR, 5, T0, p, T0)
        await store.window_add(fqn, "u1", W1H, [(T0, 5)], T0)
    await store.write("a.score", "u1", WriteOp.INCR, 1, T0, p, T0)
    await store.window_add("b.score", "u1", W1H, [(T0, 7)], T0)
    assert await store.read("a.score", "u1", 0, T0) == [Stamped(6, T0)]
    assert await store.read("b.score", "u1", 0, T0) == [Stamped(5, T0)]
    assert await store.window_read("a.score", "u1", W1H, T0) == (5, 1, 5, 5)
    assert await store.window_read("b.score", "u1", W1H, T0) == (12, 2, 5, 7)
    assert len(list(raw.scan_iter())) == 4


async def test_prefix_separates_two_deployments_on_one_redis(redis_url: str) -> None:
    a = RedisStateStore.from_url(redis_url)
    b = RedisStateStore.from_url(redis_url + "?prefix=staging")
    try:
        await a.write("x.f", "u", WriteOp.SET, "prod", T0, WritePolicy(), T0)
        assert await b.read("x.f", "u", 0, T0) == [None]
    finally:
        await a.close()
        await b.close()


# -- TTLs in Redis (real time) -------------------------------------------------------------------


async def wait_gone(raw: sync_redis.Redis, key: str, limit: float = 3.0) -> float:
    start = time.monotonic()
    while raw.exists(key):
        assert time.monotonic() - start < limit, f"{key} still in Redis after {limit}s"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_redis_drops_a_value_staleness_after_its_timestamp(
    store: RedisStateStore, raw: sync_redis.Redis
) -> None:
    p = WritePolicy(staleness=400_000)
    await store.write("t.v", "u", WriteOp.SET, 1, T0, p, T0 + 100_000)
    key = store.value_key("t.v", "u")
    assert 0 < raw.pttl(key) <= 300  # relative to the `now` given: 300 ms left
    assert await store.read("t.v", "u", 0, T0 + 400_000) == [Stamped(1, T0)]
    assert 0.15 < await wait_gone(raw, key) < 1.0


async def test_versions_keep_the_key_alive_i_times_version_ttl(
    store: RedisStateStore, raw: sync_redis.Redis
) -> None:
    p = WritePolicy(staleness=100_000, versions=2, version_ttl=300_000)
    for i in range(3):
        await store.write("t.k", "u", WriteOp.SET, i, T0 + i, p, T0 + i)
    key = store.value_key("t.k", "u")
    assert 450 < raw.pttl(key) <= 600  # version 2 lives 2 × 300 ms after the last write
    got = await store.read("t.k", "u", 2, T0 + 2)
    assert got == [Stamped(2, T0 + 2), Stamped(1, T0 + 1), Stamped(0, T0)]
    await wait_gone(raw, key)


async def test_redis_drops_window_buckets_after_window_plus_grace(
    store: RedisStateStore, raw: sync_redis.Redis
) -> None:
    w = WindowSpec(granularity=100_000, over=200_000, grace=100_000)
    now = T0 + 50_000
    await store.window_add("t.w", "u", w, [(now, 1), (now + 250_000, 2)], now)
    hkey, zkey = store.window_keys("t.w", "u", w)
    assert raw.hlen(hkey) == 2  # bucket + meta
    assert 0 < raw.pttl(hkey) <= 700
    assert 0 < raw.pttl(zkey) <= 700
    assert await store.window_read("t.w", "u", w, now) == (1, 1, 1, 1)
    await wait_gone(raw, hkey)
    await wait_gone(raw, zkey)


async def test_logically_expired_value_is_not_served_while_redis_still_has_it(
    redis_url: str, raw: sync_redis.Redis
) -> None:
    store = RedisStateStore.from_url(redis_url)  # ttl_floor 1 s keeps the key around
    try:
        await store.write("t.f", "u", WriteOp.SET, 1, T0, WritePolicy(staleness=10), T0)
        assert raw.exists(store.value_key("t.f", "u"))
        assert await store.read("t.f", "u", 0, T0 + 10) == [Stamped(1, T0)]
        assert await store.read("t.f", "u", 0, T0 + 11) == [None]
    finally:
        await store.close()


async def test_window_prune_keeps_a_busy_hash_small(
    store: RedisStateStore, raw: sync_redis.Redis
) -> None:
    for m in range(12 * 60):
        t = T0 + m * MINUTE
        await store.window_add("t.busy", "u", W1H, [(t, m)], t)
    hkey, _ = store.window_keys("t.busy", "u", W1H)
    fields = raw.hlen(hkey)
    assert fields < 90  # 60 + grace fine buckets, ~9 coarse ones, meta; not 12 hours' worth
    got = await store.window_read("t.busy", "u", W1H, T0 + (12 * 60 - 1) * MINUTE)
    assert got[1] == 60


# -- scripts and errors --------------------------------------------------------------------------


async def test_flushed_script_cache_is_reloaded_transparently(
    store: RedisStateStore, raw: sync_redis.Redis
) -> None:
    await store.write("s.f", "u", WriteOp.SET, 1, T0, WritePolicy(), T0)
    raw.script_flush()
    got = await store.apply(
        [
            ValueWrite("s.f", "u", WriteOp.INCR, 2, T0, WritePolicy()),
            WindowAdd("s.g", "u", W1H, [(T0, 3)]),
        ],
        T0,
    )
    assert got == [Stamped(3, T0), 1]
    raw.script_flush()
    (window,) = await store.read_batch([WindowRead("s.g", "u", W1H)], T0)
    assert window == (3, 1, 3, 3)


async def test_incr_of_a_non_number_is_a_type_error(store: RedisStateStore) -> None:
    await store.write("e.f", "u", WriteOp.SET, "text", T0, WritePolicy(), T0)
    with pytest.raises(ValueTypeError, match="non-number"):
        await store.write("e.f", "u", WriteOp.INCR, 1, T0, WritePolicy(), T0)
    with pytest.raises(ValueTypeError, match="not a list"):
        await store.write("e.f", "u", WriteOp.APPEND, 1, T0, WritePolicy(), T0)
    assert await store.read("e.f", "u", 0, T0) == [Stamped("text", T0)]


async def test_incr_beyond_64_bits_is_a_type_error_and_changes_nothing(
    store: RedisStateStore,
) -> None:
    await store.write("e.g", "u", WriteOp.SET, -(2**63), T0, WritePolicy(), T0)
    with pytest.raises(ValueTypeError, match="64-bit"):
        await store.write("e.g", "u", WriteOp.INCR, -1, T0, WritePolicy(), T0)
    assert await store.read("e.g", "u", 0, T0) == [Stamped(-(2**63), T0)]


async def test_values_msgpack_cannot_hold_are_rejected_before_sending(
    store: RedisStateStore,
) -> None:
    with pytest.raises(ValueTypeError):
        await store.write("e.h", "u", WriteOp.SET, 2**64, T0, WritePolicy(), T0)
    with pytest.raises(ValueTypeError):
        await store.window_add("e.h", "u", W1H, [(T0, 2**63)], T0)


# -- windows: bit-identical to the memory store ---------------------------------------------------

_numbers = st.one_of(
    st.integers(-(2**62), 2**62),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.floats(-10, 10),
)


@st.composite
def streams(draw: st.DrawFn) -> tuple[WindowSpec, list[tuple[str, Any]]]:
    g = draw(st.sampled_from([1, 3, 1000, SECOND, MINUTE]))
    n = draw(st.integers(1, 1200))
    window = WindowSpec(
        granularity=g,
        over=draw(st.integers((n - 1) * g + 1, n * g)),
        grace=draw(st.sampled_from([0, g, 300 * SECOND])),
    )
    kind = draw(st.sampled_from(["int", "float", "mixed"]))
    values = {
        "int": st.one_of(st.integers(-(2**62), 2**62), st.integers(-1000, 1000)),
        "float": st.floats(allow_nan=False, allow_infinity=False),
        "mixed": _numbers,
    }[kind]
    span = (n + 2) * g
    ops = draw(
        st.lists(
            st.one_of(
                st.tuples(
                    st.just("add"),
                    st.lists(st.tuples(st.integers(-span, 2 * g), values), min_size=1, max_size=6),
                ),
                st.tuples(
                    st.just("apply"),
                    st.lists(
                        st.lists(st.tuples(st.integers(-span, 2 * g), values), max_size=4),
                        min_size=1,
                        max_size=3,
                    ),
                ),
                st.tuples(st.just("read"), st.integers(0, 3 * g)),
                st.tuples(st.just("advance"), st.integers(0, span)),
            ),
            min_size=1,
            max_size=30,
        )
    )
    return window, ops


def _same(a: Any, b: Any) -> bool:
    """Equal field by field, of the same types; NaN (inf + -inf) matches NaN."""
    return all(
        type(x) is type(y) and (x == y or (x != x and y != y)) for x, y in zip(a, b, strict=True)
    )


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=streams())
async def test_windows_are_bit_identical_to_the_memory_store(
    floored: RedisStateStore, case: tuple[WindowSpec, list[tuple[str, Any]]]
) -> None:
    window, ops = case
    store, memory = floored, MemoryStateStore()
    fqn = f"h.f{time.monotonic_ns()}"
    now = T0
    for op, arg in ops:
        if op == "advance":
            now += arg
        elif op == "read":
            at = now + arg
            want = await memory.window_read(fqn, "u", window, at)
            got = await store.window_read(fqn, "u", window, at)
            assert _same(got, want), (got, want)
            now = at
        elif op == "apply":  # several adds to one key in a batch (merged into one call)
            batch: list[ValueWrite | WindowAdd] = [
                WindowAdd(fqn, "u", window, [(now + dt, x) for dt, x in add]) for add in arg
            ]
            batch.insert(1, ValueWrite(fqn, "u", WriteOp.INCR, 1, now, WritePolicy()))
            assert await store.apply(batch, now) == await memory.apply(batch, now)
        else:
            events = [(now + dt, x) for dt, x in arg]
            assert await store.window_add(fqn, "u", window, events, now) == (
                await memory.window_add(fqn, "u", window, events, now)
            )
    want_batch = await memory.read_batch([WindowRead(fqn, "u", window)], now)
    got_batch = await store.read_batch([WindowRead(fqn, "u", window)], now)
    assert _same(got_batch[0], want_batch[0])


async def test_runs_of_int_events_fold_exactly_next_to_float_sums(
    floored: RedisStateStore,
) -> None:
    """Lua folds a run of int events of one bucket once and merges it into every level; a
    bucket whose sum is a float takes them one by one, in order, as the memory store does."""
    window = WindowSpec(granularity=MINUTE, over=60 * MINUTE)
    store, memory = floored, MemoryStateStore()
    fqn = f"h.runs{time.monotonic_ns()}"
    now = T0 + 30 * MINUTE
    batches: list[list[tuple[int, Any]]] = [
        [(now, 1), (now, 2**62), (now + 1, 2**62), (now, -5), (now - MINUTE, 3)],
        [(now, 0.1), (now, 3), (now, 4), (now, 0.2), (now, 1e17), (now, 1)],
        [(now - 3 * MINUTE, x) for x in (0.5, 2**53, 1, 1)],  # a run after a float sum
        [(now + MINUTE, x) for x in (0.5, 2**53, 1, 1)],  # the same, folded when read
        [(now - 2 * MINUTE, 7), (now - 2 * MINUTE, 8), (now - 9 * MINUTE, -(2**63))],
        [(now - MINUTE, 2), (now - MINUTE, 2.0), (now - MINUTE, 1), (now - MINUTE, 5)],
    ]
    for i, events in enumerate(batches):
        for entity in (f"alone{i}", "all"):  # each batch on its own, and all in one window
            assert await store.window_add(fqn, entity, window, events, now) == (
                await memory.window_add(fqn, entity, window, events, now)
            )
            for at in (now, now + MINUTE, now + 8 * MINUTE):
                got = await store.window_read(fqn, entity, window, at)
                want = await memory.window_read(fqn, entity, window, at)
                assert _same(got, want), (i, entity, got, want)


async def test_batches_use_one_pipeline_in_order(store: RedisStateStore) -> None:
    p = WritePolicy()
    writes: list[ValueWrite | WindowAdd] = [
        ValueWrite(f"b.f{i}", f"u{j}", WriteOp.SET, i * 10 + j, T0, p)
        for i in range(5)
        for j in range(20)
    ]
    writes.append(WindowAdd("b.w", "u0", W1H, [(T0 - 2 * HOUR, 1)]))  # all late: no command
    got = await store.apply(writes, T0)
    assert got[-1] == 0
    assert got[:-1] == [Stamped(i * 10 + j, T0) for i in range(5) for j in range(20)]
    reads: list[ValueRead | WindowRead] = [
        ValueRead(f"b.f{i}", f"u{j}") for j in range(20) for i in range(5)
    ]
    out = await store.read_batch(reads, T0)
    assert out == [[Stamped(i * 10 + j, T0)] for j in range(20) for i in range(5)]


# -- Redis Cluster: every script and batch is single-slot or CROSSSLOT would fail ----------------


@pytest.fixture(scope="module")
def cluster_url() -> Iterator[str]:
    with RedisClusterServers(3) as cluster:
        yield cluster.url


@pytest.mark.integration
class TestRedisClusterStateStore(StateStoreConformance):
    @pytest.fixture
    async def store(self, cluster_url: str) -> AsyncIterator[StateStore]:
        store = RedisStateStore.from_url(cluster_url)
        yield store
        await store.close()

    async def test_keys_spread_over_every_node(self, store: StateStore) -> None:
        await fill(store, "cl.spread", [f"u{i}" for i in range(30)])
        assert isinstance(store, RedisStateStore)
        slots = {key_slot(store.value_key("cl.spread", f"u{i}").encode()) for i in range(30)}
        assert {s * 3 // 16384 for s in slots} == {0, 1, 2}
        reads: list[ValueRead | WindowRead] = [ValueRead("cl.spread", f"u{i}") for i in range(30)]
        got = await store.read_batch(reads, T0 + 1)
        assert got == [[Stamped([1, 2, 3], T0 + 1)]] * 30


# -- Sentinel: the store finds the master through the Sentinel ------------------------------------


@pytest.fixture(scope="module")
def sentinel_url() -> Iterator[str]:
    with RedisSentinel("mymaster") as sentinel:
        yield sentinel.url


@pytest.mark.integration
async def test_sentinel_url_reaches_the_master(sentinel_url: str) -> None:
    store = RedisStateStore.from_url(sentinel_url)
    try:
        await store.ping()
        p = WritePolicy(versions=1)
        await store.write("sn.f", "u", WriteOp.SET, 1, T0, p, T0)
        await store.write("sn.f", "u", WriteOp.INCR, 2, T0 + 1, p, T0 + 1)
        await store.window_add("sn.w", "u", W1H, [(T0, 4)], T0)
        got = await store.read_batch([ValueRead("sn.f", "u", 1), WindowRead("sn.w", "u", W1H)], T0)
        assert got == [[Stamped(3, T0 + 1), Stamped(1, T0)], (4, 1, 4, 4)]
    finally:
        await store.close()
