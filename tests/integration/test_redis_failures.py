"""Redis going away and coming back: typed errors within the timeout, recovery without a new
store, and no acknowledged write lost (a server with an fsync-always append-only file)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from raptor.api.windows import WindowSpec
from raptor.errors import StateUnavailable
from raptor.state import Stamped, ValueRead, ValueWrite, WindowAdd, WindowRead, WriteOp, WritePolicy
from raptor.state.redis import RedisStateStore
from servers import RedisServer

pytestmark = pytest.mark.integration

T0 = 1_717_200_000_000_000
MINUTE = 60_000_000
W1H = WindowSpec(granularity=MINUTE, over=60 * MINUTE)
TIMEOUT = 1.0
P = WritePolicy()


@pytest.fixture
def server() -> Iterator[RedisServer]:
    with RedisServer(persistent=True) as server:
        yield server


@pytest.fixture
async def store(server: RedisServer) -> AsyncIterator[RedisStateStore]:
    store = RedisStateStore.from_url(server.url, timeout=TIMEOUT)
    yield store
    await store.close()


def every_operation(store: RedisStateStore) -> dict[str, Callable[[], Awaitable[Any]]]:
    return {
        "read": lambda: store.read("f.a", "u", 1, T0),
        "write": lambda: store.write("f.a", "u", WriteOp.INCR, 1, T0, P, T0),
        "window_add": lambda: store.window_add("f.w", "u", W1H, [(T0, 1)], T0),
        "window_read": lambda: store.window_read("f.w", "u", W1H, T0),
        "read_batch": lambda: store.read_batch(
            [ValueRead("f.a", "u"), WindowRead("f.w", "u", W1H)], T0
        ),
        "apply": lambda: store.apply([ValueWrite("f.a", "u", WriteOp.INCR, 1, T0, P)], T0),
        "ping": store.ping,
    }


async def fails_fast(call: Callable[[], Awaitable[Any]]) -> float:
    start = time.monotonic()
    with pytest.raises(StateUnavailable):
        await call()
    return time.monotonic() - start


async def test_stopped_redis_fails_every_call_within_the_timeout(
    server: RedisServer, store: RedisStateStore
) -> None:
    await store.write("f.a", "u", WriteOp.INCR, 1, T0, P, T0)
    server.stop()
    for name, call in every_operation(store).items():
        elapsed = await fails_fast(call)
        assert elapsed < TIMEOUT + 0.5, f"{name} took {elapsed:.2f}s"


async def test_frozen_redis_fails_every_call_at_the_timeout(
    server: RedisServer, store: RedisStateStore
) -> None:
    await store.ping()
    server.pause()
    try:
        for name, call in every_operation(store).items():
            elapsed = await fails_fast(call)
            assert TIMEOUT - 0.1 < elapsed < TIMEOUT + 0.5, f"{name} took {elapsed:.2f}s"
    finally:
        server.resume()
    await store.ping()  # the timed-out connections were dropped, fresh ones work
    assert await store.read("f.a", "u", 0, T0) == [None]


async def test_store_recovers_when_redis_returns_and_keeps_acknowledged_writes(
    server: RedisServer, store: RedisStateStore
) -> None:
    acked: list[int] = []
    for i in range(50):
        await store.write("f.list", "u", WriteOp.APPEND, i, T0 + i, P, T0 + i)
        acked.append(i)
    assert await store.window_add("f.w", "u", W1H, [(T0, 5), (T0 + 1, 6)], T0 + 1) == 2
    server.stop()
    with pytest.raises(StateUnavailable):
        await store.write("f.list", "u", WriteOp.APPEND, 99, T0 + 99, P, T0 + 99)
    server.start()
    await store.ping()  # same store object: the pool reconnects by itself
    assert await store.read("f.list", "u", 0, T0 + 60) == [Stamped(acked, T0 + 49)]
    assert await store.window_read("f.w", "u", W1H, T0 + 1) == (11, 2, 5, 6)
    got = await store.write("f.list", "u", WriteOp.APPEND, 50, T0 + 50, P, T0 + 50)
    assert got == Stamped([*acked, 50], T0 + 50)  # scripts reloaded after the restart


async def test_writes_racing_a_crash_lose_nothing_that_was_acknowledged(
    server: RedisServer, store: RedisStateStore
) -> None:
    acked = attempted = 0
    crash_at = 300
    for i in range(600):
        if i == crash_at:
            server.stop()
        if i == crash_at + 100:
            server.start()
        attempted += 1
        try:
            await store.apply(
                [
                    ValueWrite("f.n", "u", WriteOp.INCR, 1, T0, P),
                    WindowAdd("f.w", "u", W1H, [(T0, 1)]),
                ],
                T0,
            )
        except StateUnavailable:
            continue
        acked += 1
    assert crash_at <= acked < attempted
    (value,) = await store.read("f.n", "u", 0, T0)
    assert value is not None
    assert acked <= value.value <= attempted
    window = await store.window_read("f.w", "u", W1H, T0)
    assert acked <= window[1] <= attempted
