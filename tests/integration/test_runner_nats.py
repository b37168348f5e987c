"""NATS JetStream (a private nats-server -js) → runner → state."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import nats
import pytest
from brokers import NatsServer, streaming_manifests

from raptor.api.loading import load_text
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import Engine
from raptor.runners.config import Secrets
from raptor.runners.loop import RunnerSettings, StreamRunner
from raptor.state.memory import MemoryStateStore

pytestmark = pytest.mark.integration

SETTINGS = RunnerSettings(
    consumer="runner-n", fetch_timeout=0.1, retry_initial=0.01, secrets=Secrets(secrets_dir=None)
)


def runner_for(engine: Engine, config: dict[str, str]) -> StreamRunner:
    loaded = load_text(streaming_manifests(config))
    catalog = build_catalog(loaded.assets)
    engine.load(catalog)
    return StreamRunner(engine, catalog.data_sources["default.clicks"], SETTINGS)


async def run_until(runner: StreamRunner, done: Callable[[], bool], limit: float = 20) -> None:
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
        await asyncio.wait_for(task, 15)


async def test_a_durable_consumer_counts_exactly_and_dead_letters_poison(
    nats_server: NatsServer,
) -> None:
    stream = f"S{uuid.uuid4().hex[:8]}"
    subject = f"{stream.lower()}.clicks"
    nc = await nats.connect(nats_server.url)
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[subject, f"{subject}.dead"])
    ts = datetime.now(UTC).isoformat()
    rows: list[Any] = [{"user": "u1", "amount": 2, "ts": ts} for _ in range(120)]
    rows[10] = {"user": "u1", "amount": 2}
    rows[11] = {"amount": 2, "ts": ts}
    for r in rows:
        await js.publish(subject, json.dumps(r).encode())
    engine = Engine(MemoryStateStore())
    config = {"kind": "nats", "url": nats_server.url, "stream": stream, "subject": subject,
              "batch_size": "50"}  # fmt: skip
    runner = runner_for(engine, config)
    m = runner.metrics
    await run_until(runner, lambda: m.applied + m.dead >= 120)
    assert (await engine.get("clicks-amount+count", {"user": "u1"})).value == 118
    assert (await engine.get("clicks-amount+sum", {"user": "u1"})).value == 236
    assert m.dead_by_reason == {"missing-timestamp": 1, "missing-key": 1}

    dead = await js.pull_subscribe(f"{subject}.dead", durable="reader", stream=stream)
    got = await dead.fetch(10, timeout=2)
    reasons = sorted(json.loads(x.data)["reason"] for x in got)
    assert reasons == ["missing-key", "missing-timestamp"]
    info = await js.consumer_info(stream, runner.source.durable)  # type: ignore[attr-defined]
    assert info.num_ack_pending == 0
    assert info.num_pending == 0

    # more events later: the same durable resumes where it stopped
    for _ in range(5):
        await js.publish(subject, json.dumps({"user": "u1", "amount": 2, "ts": ts}).encode())
    again = runner_for(engine, config)
    await run_until(again, lambda: again.metrics.applied >= 5)
    assert (await engine.get("clicks-amount+count", {"user": "u1"})).value == 123
    await nc.close()
