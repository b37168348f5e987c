"""Google Pub/Sub (the google-cloud-cli emulator) → runner → state.

Skipped, with the reason, only when the emulator binary (and Java) is absent."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from brokers import PubSubEmulator, streaming_manifests

from raptor.api.loading import load_text
from raptor.engine.catalog import build_catalog
from raptor.engine.engine import Engine
from raptor.runners.config import Secrets
from raptor.runners.loop import RunnerSettings, StreamRunner
from raptor.state.memory import MemoryStateStore

pytestmark = pytest.mark.integration

SETTINGS = RunnerSettings(
    consumer="runner-p", fetch_timeout=0.2, retry_initial=0.01, secrets=Secrets(secrets_dir=None)
)


async def run_until(runner: StreamRunner, done: Callable[[], bool], limit: float = 30) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        async with asyncio.timeout(limit):
            while not done():
                if task.done():
                    task.result()
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


def clients(host: str) -> tuple[Any, Any]:
    import grpc
    from google.cloud import pubsub_v1  # type: ignore[import-untyped]
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    pub = pubsub_v1.PublisherClient(
        transport=PublisherGrpcTransport(channel=grpc.insecure_channel(host)),
    )
    sub = pubsub_v1.SubscriberClient(
        transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(host)),
    )
    return pub, sub


async def test_a_topic_is_consumed_through_a_created_subscription(
    pubsub_emulator: PubSubEmulator,
) -> None:
    project = "raptor-test"
    topic = f"clicks-{uuid.uuid4().hex[:8]}"
    pub, sub = clients(pubsub_emulator.host)
    topic_path = f"projects/{project}/topics/{topic}"
    pub.create_topic(request={"name": topic_path}, timeout=30)
    dead_topic = f"projects/{project}/topics/sub-{topic}.dead"
    pub.create_topic(request={"name": dead_topic}, timeout=30)
    dead_sub = f"projects/{project}/subscriptions/dead-{topic}"
    sub.create_subscription(request={"name": dead_sub, "topic": dead_topic}, timeout=30)
    engine = Engine(MemoryStateStore())
    config = {"kind": "pubsub", "project_id": project, "topic": topic,
              "subscription": f"sub-{topic}", "emulator_host": pubsub_emulator.host}  # fmt: skip
    loaded = load_text(streaming_manifests(config))
    catalog = build_catalog(loaded.assets)
    engine.load(catalog)
    runner = StreamRunner(engine, catalog.data_sources["default.clicks"], SETTINGS)
    # the subscription is created by the runner's start; publish after it exists
    await runner.source.start({})
    ts = datetime.now(UTC).isoformat()
    futures = [
        pub.publish(topic_path, json.dumps({"user": "u1", "amount": 3, "ts": ts}).encode())
        for _ in range(40)
    ]
    futures.append(pub.publish(topic_path, b"\x00 garbage"))
    for f in futures:
        f.result(timeout=30)
    m = runner.metrics
    await run_until(runner, lambda: m.applied + m.dead >= 41)
    assert (await engine.get("clicks-amount+count", {"user": "u1"})).value == 40
    assert (await engine.get("clicks-amount+sum", {"user": "u1"})).value == 120
    assert m.dead_by_reason == {"undecodable": 1}
    reply = sub.pull(request={"subscription": dead_sub, "max_messages": 10}, timeout=30)
    docs = [json.loads(r.message.data) for r in reply.received_messages]
    assert [d["reason"] for d in docs] == ["undecodable"]
    assert reply.received_messages[0].message.attributes["reason"] == "undecodable"
    pub.stop()
    sub.close()
