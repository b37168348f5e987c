"""Redis Streams → runner → Redis state, on a private redis-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from brokers import streaming_manifests

from raptor.api.loading import load_text
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import Engine
from raptor.runners.config import Secrets
from raptor.runners.loop import RunnerSettings, StreamRunner
from raptor.runners.metrics import render
from raptor.state.redis import RedisStateStore

pytestmark = pytest.mark.integration

SETTINGS = RunnerSettings(
    consumer="runner-a", fetch_timeout=0.05, retry_initial=0.01, secrets=Secrets(secrets_dir=None)
)


def now_text() -> str:
    return datetime.now(UTC).isoformat()


@pytest.fixture
async def engine(redis_url: str) -> AsyncIterator[Engine]:
    store = RedisStateStore.from_url(redis_url)
    e = Engine(store)
    try:
        yield e
    finally:
        await e.aclose()
        await store.close()


def load(engine: Engine, config: dict[str, str]) -> StreamRunner:
    loaded = load_text(streaming_manifests(config))
    assert not loaded.errors, loaded.errors
    catalog = build_catalog(loaded.assets)
    assert not catalog.errors, catalog.errors
    engine.load(catalog)
    return StreamRunner(engine, catalog.data_sources["default.clicks"], SETTINGS)


async def run_until(runner: StreamRunner, done: Callable[[], bool], limit: float = 15) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(limit):
            while not done():
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def processed(runner: StreamRunner) -> int:
    m = runner.metrics
    return m.applied + m.dead + m.replayed


async def window(engine: Engine, user: str) -> tuple[Any, Any, Any]:
    out = []
    for fn in ("sum", "count", "avg"):
        out.append((await engine.get(f"clicks-amount+{fn}", {"user": user})).value)
    return out[0], out[1], out[2]


async def test_events_are_counted_exactly_and_poison_goes_to_the_dead_stream(
    engine: Engine, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    sums = {"u1": 0, "u2": 0}
    for i in range(300):
        user = f"u{i % 2 + 1}"
        row = {"user": user, "amount": i, "ts": now_text(), "meta": {"page": f"/p{i}"}}
        client.xadd("events", {"data": json.dumps(row)})
        sums[user] += i
        if i % 50 == 25:  # poison in the middle of good traffic
            client.xadd("events", {"data": b"\xff not json"})
            client.xadd("events", {"data": json.dumps({"user": "u1", "amount": 1})})
            boom = {"user": "u1", "amount": 1, "ts": now_text(), "boom": 1}
            client.xadd("events", {"data": json.dumps(boom)})
    # an entry without the payload field is read as flat string fields
    client.xadd("events", {"user": "u3", "amount": "7", "ts": now_text()})
    runner = load(engine, {"kind": "redis", "url": redis_url, "stream": "events"})
    total = client.xlen("events")
    await run_until(runner, lambda: processed(runner) >= total)

    assert await window(engine, "u1") == (sums["u1"], 150, sums["u1"] / 150)
    assert await window(engine, "u2") == (sums["u2"], 150, sums["u2"] / 150)
    assert (await engine.get("clicks-last-page", {"user": "u2"})).value == "/p299"
    dead = client.xrange("events.dead")
    reasons = sorted(fields[b"reason"].decode() for _, fields in dead)
    assert reasons == sorted(
        ["undecodable", "missing-timestamp", "program-error"] * 6 + ["wrong-type"]
    )
    one = next(f for _, f in dead if f[b"reason"] == b"program-error")
    assert b"boom" in one[b"error"]
    assert json.loads(one[b"data"])["boom"] == 1
    assert client.xpending("events", "raptor.default.clicks")["pending"] == 0
    text = render([runner.metrics]).decode()
    assert 'raptor_ingest_events_total{datasource="default.clicks",result="applied"} 300.0' in text
    assert 'reason="missing-timestamp"} 6.0' in text
    client.close()


async def test_pending_entries_of_a_dead_consumer_are_claimed(
    engine: Engine, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.xgroup_create("events", "raptor.default.clicks", id="0", mkstream=True)
    row = json.dumps({"user": "u1", "amount": 1, "ts": now_text()})
    for _ in range(20):
        client.xadd("events", {"data": row})
    # a consumer that read 12 entries and died before acknowledging them
    client.xreadgroup("raptor.default.clicks", "dead-pod", {"events": ">"}, count=12)
    runner = load(
        engine, {"kind": "redis", "url": redis_url, "stream": "events", "claim_idle": "0s"}
    )
    await run_until(runner, lambda: processed(runner) >= 20)
    assert await window(engine, "u1") == (20, 20, 1.0)
    assert client.xpending("events", "raptor.default.clicks")["pending"] == 0
    client.close()


async def test_a_restarted_consumer_rereads_its_own_pending_entries_once(
    engine: Engine, redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    config = {"kind": "redis", "url": redis_url, "stream": "events"}
    for _ in range(30):
        client.xadd("events", {"data": json.dumps({"user": "u1", "amount": 2, "ts": now_text()})})
    first = load(engine, config)

    async def lost_ack(messages: Any) -> None:  # crash between state write and XACK
        raise asyncio.CancelledError

    first.source.ack = lost_ack  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(first.run(stop))
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)
    assert await window(engine, "u1") == (60, 30, 2.0)
    assert client.xpending("events", "raptor.default.clicks")["pending"] == 30

    second = load(engine, config)
    await run_until(second, lambda: processed(second) >= 30)
    assert await window(engine, "u1") == (60, 30, 2.0)
    assert second.metrics.replayed == 30
    assert client.xpending("events", "raptor.default.clicks")["pending"] == 0
    client.close()
