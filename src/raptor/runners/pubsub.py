"""Google Cloud Pub/Sub source; the only module that imports ``google.cloud.pubsub``.

Config (SPEC 8.1): ``project_id``, ``subscription`` — or ``topic``, and the subscription
``raptor.<namespace>.<name>`` is created on it with ``ack_deadline`` (default ``10s``, Pub/Sub's
minimum: how soon a crashed runner's messages come back) —, optional ``emulator_host``
(``host:port`` of the Pub/Sub emulator: plaintext, no credentials), ``credentials_file`` (a
service account JSON file; else Application Default Credentials), ``dead_letter`` (default
topic ``<subscription>.dead``, created if missing).

Delivery: synchronous ``pull`` of up to the batch size (the client library runs it in a worker
thread), ``acknowledge`` after the state write; unacknowledged messages come back after the
ack deadline. Pub/Sub gives **no order and no position**, so its messages are written with
plain (unfenced) state writes: **at-least-once** — a crash between the state write and the ack
re-applies those messages (see ``docs/ingestion.md``). Broker time = the publish time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
from google.api_core import exceptions as gexc
from google.cloud import pubsub_v1  # type: ignore[import-untyped]

from raptor.errors import ManifestError
from raptor.runners.config import config_duration
from raptor.runners.dead_letters import dead_letter_record
from raptor.runners.source import DeadLetter, Message, SourceError, SourceSettings, require

__all__ = ["PubSubSource"]


def _clients(emulator: str | None, credentials_file: str | None) -> tuple[Any, Any]:
    """A subscriber and a publisher client (plaintext channels to the emulator)."""
    if emulator:
        import grpc  # the emulator speaks plaintext gRPC (what PUBSUB_EMULATOR_HOST does)
        from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport
        from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

        sub = pubsub_v1.SubscriberClient(
            transport=SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator)),
        )
        pub = pubsub_v1.PublisherClient(
            transport=PublisherGrpcTransport(channel=grpc.insecure_channel(emulator)),
        )
        return sub, pub
    if credentials_file:
        return (
            pubsub_v1.SubscriberClient.from_service_account_file(credentials_file),
            pubsub_v1.PublisherClient.from_service_account_file(credentials_file),
        )
    return pubsub_v1.SubscriberClient(), pubsub_v1.PublisherClient()


class PubSubSource:
    """Pulls one Pub/Sub subscription (see the module docstring)."""

    prefetch = True

    def __init__(self, settings: SourceSettings) -> None:
        o = settings.config.options
        self.project = require(o, "project_id", "pubsub")
        sub_name = o.get("subscription", "").strip()
        self.topic = o.get("topic", "").strip() or None
        if not sub_name and not self.topic:
            raise ManifestError(
                "pubsub source: config 'subscription' (or 'topic') is required",
                field="spec.config",
            )
        self.subscription_name = sub_name or f"raptor.{settings.data_source}"
        self.subscription = f"projects/{self.project}/subscriptions/{self.subscription_name}"
        self.ack_deadline = int(config_duration(o, "ack_deadline", 10.0))
        self.emulator = o.get("emulator_host", "").strip() or None
        self.credentials_file = o.get("credentials_file", "").strip() or None
        self.dead_letter_target = settings.config.dead_letter or f"{self.subscription_name}.dead"
        self.description = f"pubsub subscription {self.subscription}"
        self.data_source = settings.data_source
        self._sub: Any = None
        self._pub: Any = None
        self._dead_ready = False

    async def start(self, resume: Mapping[str, str]) -> None:
        await asyncio.to_thread(self._start)

    def _start(self) -> None:
        try:
            if self._sub is None:
                self._sub, self._pub = _clients(self.emulator, self.credentials_file)
            if self.topic is not None:
                topic = f"projects/{self.project}/topics/{self.topic}"
                with contextlib.suppress(gexc.AlreadyExists):
                    self._sub.create_subscription(
                        request={
                            "name": self.subscription,
                            "topic": topic,
                            "ack_deadline_seconds": self.ack_deadline,
                        },
                        timeout=30,
                    )
            self._sub.get_subscription(request={"subscription": self.subscription}, timeout=30)
        except gexc.GoogleAPIError as exc:
            raise SourceError(f"{self.description}: {exc}") from exc

    async def fetch(self, max_messages: int, wait: float) -> list[Message]:
        if self._sub is None:
            raise SourceError(f"{self.description}: not started")
        return await asyncio.to_thread(self._fetch, min(max_messages, 1000), wait)

    def _fetch(self, n: int, timeout: float) -> list[Message]:
        try:
            reply = self._sub.pull(
                request={"subscription": self.subscription, "max_messages": n},
                timeout=max(timeout, 1.0),
            )
        except (gexc.DeadlineExceeded, gexc.RetryError):
            return []
        except gexc.GoogleAPIError as exc:
            raise SourceError(f"{self.description}: {exc}") from exc
        out: list[Message] = []
        for rm in reply.received_messages:
            m = rm.message
            published = m.publish_time
            broker_time = int(published.timestamp() * 1_000_000) if published is not None else None
            key = m.ordering_key.encode() if m.ordering_key else None
            out.append(
                Message(bytes(m.data), self.subscription_name, None, broker_time, key, rm.ack_id)
            )
        return out

    async def ack(self, messages: Sequence[Message]) -> None:
        ids = [m.handle for m in messages]
        if ids:
            await asyncio.to_thread(self._ack, ids)

    def _ack(self, ids: list[str]) -> None:
        try:
            for i in range(0, len(ids), 1000):
                self._sub.acknowledge(
                    request={"subscription": self.subscription, "ack_ids": ids[i : i + 1000]},
                    timeout=30,
                )
        except gexc.GoogleAPIError as exc:
            raise SourceError(f"{self.description}: acknowledge failed: {exc}") from exc

    async def dead_letter(self, entries: Sequence[DeadLetter]) -> None:
        await asyncio.to_thread(self._dead_letter, list(entries))

    def _dead_letter(self, entries: list[DeadLetter]) -> None:
        topic = f"projects/{self.project}/topics/{self.dead_letter_target}"
        now = time.time_ns() // 1000
        try:
            if not self._dead_ready:
                with contextlib.suppress(gexc.AlreadyExists):
                    self._pub.create_topic(request={"name": topic}, timeout=30)
                self._dead_ready = True
            futures = [
                self._pub.publish(
                    topic,
                    msgspec.json.encode(dead_letter_record(e, self.data_source, now)),
                    reason=e.reason,
                    datasource=self.data_source,
                )
                for e in entries
            ]
            for f in futures:
                f.result(timeout=30)
        except (gexc.GoogleAPIError, TimeoutError) as exc:
            raise SourceError(f"{self.description}: dead letter to {topic} failed: {exc}") from exc

    def lag(self) -> Mapping[str, int]:
        return {}

    async def close(self) -> None:
        sub, pub = self._sub, self._pub
        self._sub = self._pub = None
        if sub is not None:
            await asyncio.to_thread(sub.close)
        if pub is not None:
            await asyncio.to_thread(pub.stop)
