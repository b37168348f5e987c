"""The source contract: what the consume→update loop needs from a broker adapter.

One adapter module per broker implements :class:`Source` (:mod:`raptor.runners.kafka`,
:mod:`~raptor.runners.redis_streams`, :mod:`~raptor.runners.nats`,
:mod:`~raptor.runners.pubsub`); each is the only importer of its client library and is imported
lazily by :func:`open_source`, so a runner for Redis Streams needs no Kafka client installed.

Vocabulary:

* A **partition** is a totally ordered sub-stream with one reader at a time: a Kafka
  ``topic/partition``, a Redis stream *as delivered to one consumer*
  (``stream@consumer``), a JetStream stream (its consumer is limited to one batch in flight),
  none for Pub/Sub (no order, ``position`` is ``None``).
* A **position** orders messages within their partition: a string of decimal digits compared
  as a number (a shorter string is smaller; equal lengths compare as text). Kafka: the offset;
  Redis: the entry id ``ms-seq`` as ``ms`` followed by ``seq`` on 20 digits; JetStream: the
  stream sequence. See :func:`position_after`.
* **Resume state** is what the state store recorded with the last applied batch
  (:meth:`raptor.state.CheckpointStore.positions`): passed to :meth:`Source.start`, an adapter
  may use it to skip what was applied but not yet acknowledged (Kafka seeks past it); the
  broker's own acknowledgements stay the primary resume point.

Life cycle, driven by :class:`raptor.runners.loop.StreamRunner`::

    await source.start(resume)             # connect, join the group, create what is missing
    while running:
        batch = await source.fetch(n, wait)   # at most n messages, [] after waiting
        ... decode, run programs, write state with positions ...
        await source.dead_letter(entries)  # poison messages, durably, before the ack
        await source.ack(batch)            # commit/ack only after the state write
    await source.close()

Adapters must deliver a partition's messages in position order, re-deliver what was fetched but
not acknowledged (after a crash or a restart), and never acknowledge on their own.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from raptor.errors import ManifestError, RaptorError
from raptor.runners.config import StreamConfig

__all__ = [
    "DeadLetter",
    "Message",
    "Source",
    "SourceError",
    "SourceSettings",
    "compare_positions",
    "open_source",
    "payload_text",
    "position_after",
    "require",
]


class SourceError(RaptorError):
    """The broker cannot be reached or refused an operation (retried by the loop)."""


@dataclass(slots=True)
class Message:
    """One consumed message.

    ``payload`` is the message body (bytes holding a JSON row) or, for Redis entries without a
    payload field, the entry's fields as a mapping. ``broker_time`` is epoch microseconds
    (``None`` when the broker has none). ``handle`` is the adapter's acknowledgement handle.
    """

    payload: bytes | Mapping[str, Any]
    partition: str
    position: str | None
    broker_time: int | None = None
    key: bytes | None = None
    handle: Any = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that could not be turned into state, and why (SPEC 8.1 dead letter)."""

    message: Message
    reason: str
    error: str


@dataclass(frozen=True, slots=True)
class SourceSettings:
    """What an adapter needs besides the DataSource config.

    ``consumer`` is a stable consumer identity (Redis consumer name, Kafka
    ``group.instance.id``, part of the JetStream/Pub/Sub client names).
    """

    data_source: str
    config: StreamConfig
    consumer: str
    max_batch: int = 1000


class Source(Protocol):
    """A broker adapter (see the module docstring for the protocol)."""

    description: str
    """Human-readable origin for logs and errors (``kafka topic clicks``)."""

    dead_letter_target: str
    """Where :meth:`dead_letter` writes: config ``dead_letter``, else the broker default."""

    prefetch: bool
    """Whether the loop may fetch the next batch while the current one is written."""

    async def start(self, resume: Mapping[str, str]) -> None:
        """Connect and position the consumer; ``resume`` maps partition → last applied
        position recorded in state."""
        ...

    async def fetch(self, max_messages: int, wait: float) -> list[Message]:
        """Up to ``max_messages`` messages, waiting at most ``wait`` seconds for the first."""
        ...

    async def ack(self, messages: Sequence[Message]) -> None:
        """Acknowledge/commit ``messages`` (all written to state or dead-lettered)."""
        ...

    async def dead_letter(self, entries: Sequence[DeadLetter]) -> None:
        """Durably store poison messages in the broker's default dead letter target."""
        ...

    def lag(self) -> Mapping[str, int]:
        """Messages behind the head per partition, as last observed (may be empty)."""
        ...

    async def close(self) -> None:
        """Release the connection (nothing is acknowledged). Idempotent."""
        ...


def compare_positions(a: str, b: str) -> int:
    """-1, 0 or 1 as position ``a`` is before, equal to or after ``b``. Pure.

    >>> compare_positions("9", "10"), compare_positions("10", "10"), compare_positions("11", "10")
    (-1, 0, 1)
    """
    ka, kb = (len(a), a), (len(b), b)
    return (ka > kb) - (ka < kb)


def position_after(position: str, recorded: str | None) -> bool:
    """True when ``position`` comes after ``recorded`` (``None``: nothing recorded). Pure."""
    if recorded is None:
        return True
    return (len(position), position) > (len(recorded), recorded)


_ADAPTERS = {
    "kafka": ("raptor.runners.kafka", "KafkaSource", "confluent-kafka"),
    "redis": ("raptor.runners.redis_streams", "RedisStreamSource", "redis"),
    "nats": ("raptor.runners.nats", "NatsSource", "nats-py"),
    "pubsub": ("raptor.runners.pubsub", "PubSubSource", "google-cloud-pubsub"),
}


def open_source(settings: SourceSettings) -> Source:
    """The adapter for ``settings.config.broker``, imported lazily; ``ManifestError`` for a bad
    config, ``ImportError`` naming the extra to install when the client library is missing."""
    module_name, cls_name, package = _ADAPTERS[settings.config.broker]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name is not None and exc.name.startswith("raptor"):
            raise
        raise ImportError(
            f"the {settings.config.broker} source needs {package}: pip install 'raptor[streaming]'"
        ) from exc
    source: Source = getattr(module, cls_name)(settings)
    return source


def require(options: Mapping[str, str], name: str, broker: str) -> str:
    """A required option of a broker's config, or a ``ManifestError`` naming it."""
    value = options.get(name, "").strip()
    if not value:
        raise ManifestError(f"{broker} source: config {name!r} is required", field="spec.config")
    return value


def payload_text(message: Message) -> str:
    """The original message as text for a dead letter (bytes decoded leniently). Pure."""
    p = message.payload
    if isinstance(p, bytes | bytearray | memoryview):
        return bytes(p).decode("utf-8", "backslashreplace")
    return repr(dict(p))
