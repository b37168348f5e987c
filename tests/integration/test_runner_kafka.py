"""Kafka (librdkafka's mock cluster, real wire protocol) → runner → state."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from brokers import KafkaMock, streaming_manifests
from confluent_kafka import Consumer, Producer, TopicPartition

from raptor.api.loading import load_text
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import Engine
from raptor.runners.config import Secrets
from raptor.runners.loop import RunnerSettings, StreamRunner
from raptor.state.memory import MemoryStateStore

pytestmark = pytest.mark.integration

SETTINGS = RunnerSettings(
    consumer="runner-k", fetch_timeout=0.1, retry_initial=0.01, secrets=Secrets(secrets_dir=None)
)


def runner_for(engine: Engine, config: dict[str, str]) -> StreamRunner:
    loaded = load_text(streaming_manifests(config))
    assert not loaded.errors
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


def produce(bootstrap: str, topic: str, rows: list[Any]) -> None:
    p = Producer({"bootstrap.servers": bootstrap})
    for i, r in enumerate(rows):
        value = r if isinstance(r, bytes) else json.dumps(r).encode()
        p.produce(topic, value=value, key=f"k{i}".encode(), partition=i % 2)
    assert p.flush(10) == 0


async def test_topics_are_consumed_exactly_and_committed(kafka_mock: KafkaMock) -> None:
    topic = f"clicks-{uuid.uuid4().hex[:8]}"
    kafka_mock.create_topic(topic, 2)
    kafka_mock.create_topic(f"{topic}.dlq", 1)
    ts = datetime.now(UTC).isoformat()
    rows: list[Any] = [{"user": "u1", "amount": i, "ts": ts} for i in range(200)]
    rows[50] = b"not json"
    rows[51] = {"user": "u1", "amount": 1, "ts": ts, "bad_type": True}
    produce(kafka_mock.bootstrap, topic, rows)
    engine = Engine(MemoryStateStore())
    group = f"g-{topic}"
    runner = runner_for(
        engine,
        {
            "kind": "kafka",
            "brokers": kafka_mock.bootstrap,
            "topics": topic,
            "consumer_group": group,
        },
    )
    m = runner.metrics
    await run_until(runner, lambda: m.applied + m.dead >= 200)
    expected = sum(range(200)) - 50 - 51
    assert (await engine.get("clicks-amount+sum", {"user": "u1"})).value == expected
    assert (await engine.get("clicks-amount+count", {"user": "u1"})).value == 198
    assert m.dead_by_reason == {"undecodable": 1, "wrong-type": 1}

    probe = Consumer({"bootstrap.servers": kafka_mock.bootstrap, "group.id": group})
    committed = probe.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], 10)
    assert sorted(tp.offset for tp in committed) == [100, 100]
    probe.close()

    dlq = Consumer(
        {"bootstrap.servers": kafka_mock.bootstrap, "group.id": "dlq-reader",
         "auto.offset.reset": "earliest"}
    )  # fmt: skip
    dlq.subscribe([f"{topic}.dlq"])
    got: list[dict[str, Any]] = []
    for _ in range(50):
        got += [json.loads(x.value()) for x in dlq.consume(10, 0.2) if not x.error()]
        if len(got) >= 2:
            break
    dlq.close()
    assert sorted(d["reason"] for d in got) == ["undecodable", "wrong-type"]
    assert {d["message"] for d in got if d["reason"] == "undecodable"} == {"not json"}


async def test_a_restarted_consumer_skips_what_state_already_holds(kafka_mock: KafkaMock) -> None:
    """State written, commit lost: the replacement seeks past the recorded positions and the
    checkpoint fences skip any replay — counts stay exact."""
    topic = f"clicks-{uuid.uuid4().hex[:8]}"
    kafka_mock.create_topic(topic, 2)
    ts = datetime.now(UTC).isoformat()
    produce(kafka_mock.bootstrap, topic, [{"user": "u1", "amount": 1, "ts": ts}] * 100)
    engine = Engine(MemoryStateStore())
    # librdkafka's mock cluster completes a rebalance only after the session timeout of a
    # member that left (a real broker does on LeaveGroup): keep it short here
    config = {"kind": "kafka", "brokers": kafka_mock.bootstrap, "topics": topic,
              "consumer_group": f"g-{topic}", "librdkafka.session.timeout.ms": "1000",
              "librdkafka.heartbeat.interval.ms": "200"}  # fmt: skip
    first = runner_for(engine, config)

    async def no_commit(messages: Any) -> None:
        return None  # the commit never reaches Kafka

    first.source.ack = no_commit  # type: ignore[method-assign]
    await run_until(first, lambda: first.metrics.applied >= 100)
    assert (await engine.get("clicks-amount+count", {"user": "u1"})).value == 100

    produce(kafka_mock.bootstrap, topic, [{"user": "u1", "amount": 1, "ts": ts}] * 10)
    second = runner_for(engine, config)
    await run_until(second, lambda: second.metrics.applied >= 10)
    await asyncio.sleep(0.3)
    assert (await engine.get("clicks-amount+count", {"user": "u1"})).value == 110
