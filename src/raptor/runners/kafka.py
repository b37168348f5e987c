"""Kafka source (confluent-kafka / librdkafka); the only module that imports ``confluent_kafka``.

Config (SPEC 8.1): ``brokers`` (comma-separated ``host:port``), ``topics`` (comma-separated),
``consumer_group`` (default ``raptor.<namespace>.<name>``), ``initial_offset`` =
``earliest``/``oldest`` (default) or ``latest``/``newest`` — where a group without a committed
position starts; ``dead_letter`` (default ``<first topic>.dlq``). Security:
``security_protocol`` (else derived: ``tls_disable: "true"`` turns TLS off, SASL keys turn
SASL on), ``sasl_mechanism`` (``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``),
``sasl_username``, ``sasl_password``, ``tls_ca`` / ``tls_cert`` / ``tls_key`` (file paths, or
PEM text), ``tls_insecure_skip_verify``. Any ``librdkafka.<property>`` entry is passed through
as a librdkafka property. Secrets come from ``secretKeyRef`` entries like any config value.

Delivery:

* Offsets are never committed automatically (``enable.auto.commit=false``): :meth:`ack` commits
  ``offset + 1`` of the last message of each partition, synchronously, after the state write.
* Stable identity: ``group.instance.id`` = the runner's consumer name (static membership), so a
  restarted runner gets its partitions back without a rebalance wait.
* On assignment, a partition whose position recorded in state is ahead of the committed
  offset (a crash between the state write and the commit) is sought past it — if that
  position exists in the partition; otherwise (topic re-created) the committed offset is kept.
* A commit refused because of a rebalance is logged, not retried: the state write is already
  checkpointed, so the partition's next owner skips what was applied.
* Partition = ``<topic>/<partition>``, position = the offset, broker time = the message
  timestamp. The C client is not thread-safe across calls, so every consumer call runs in
  one dedicated thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from raptor.errors import ManifestError
from raptor.runners.dead_letters import dead_letter_record
from raptor.runners.source import DeadLetter, Message, SourceError, SourceSettings, require

__all__ = ["KafkaSource", "kafka_config"]

log = logging.getLogger("raptor.runners.kafka")

_SOFT_COMMIT_ERRORS = {
    KafkaError.REBALANCE_IN_PROGRESS,
    KafkaError.ILLEGAL_GENERATION,
    KafkaError.UNKNOWN_MEMBER_ID,
    KafkaError._NO_OFFSET,
}


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("1", "true", "yes", "on")


def _pem_or_path(value: str, what: str) -> str:
    """A file path for librdkafka: the value itself, or a temp file holding PEM text."""
    if "-----BEGIN" not in value:
        return value
    fd, path = tempfile.mkstemp(prefix=f"raptor-kafka-{what}-", suffix=".pem")
    with os.fdopen(fd, "w") as f:
        f.write(value)
    return path


def kafka_config(options: Mapping[str, str], group: str, instance: str | None) -> dict[str, Any]:
    """librdkafka properties of a consumer from DataSource config. Pure apart from writing PEM
    text to temp files."""
    initial = options.get("initial_offset", "earliest").strip().lower() or "earliest"
    resets = {"earliest": "earliest", "oldest": "earliest", "latest": "latest", "newest": "latest"}
    if initial not in resets:
        raise ManifestError(
            f"kafka source: initial_offset must be earliest or latest, not {initial!r}",
            field="spec.config",
        )
    conf: dict[str, Any] = {
        "bootstrap.servers": require(options, "brokers", "kafka"),
        "group.id": group,
        "auto.offset.reset": resets[initial],
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": False,
        "session.timeout.ms": 10_000,
        "heartbeat.interval.ms": 1_000,
    }
    if instance:
        conf["group.instance.id"] = instance
    sasl = options.get("sasl_mechanism", "").strip() or (
        "PLAIN" if options.get("sasl_username") else ""
    )
    tls_off = _truthy(options.get("tls_disable", ""))
    tls_on = not tls_off and any(options.get(k) for k in ("tls_ca", "tls_cert", "tls_key"))
    protocol = options.get("security_protocol", "").strip()
    if not protocol and (sasl or tls_on):
        protocol = ("SASL_" if sasl else "") + ("SSL" if tls_on else "PLAINTEXT")
        if sasl and not tls_off and not tls_on:
            protocol = "SASL_SSL"
    if protocol:
        conf["security.protocol"] = protocol
    if sasl:
        conf["sasl.mechanism"] = sasl
        conf["sasl.username"] = options.get("sasl_username", "")
        conf["sasl.password"] = options.get("sasl_password", "")
    for key, prop in (
        ("tls_ca", "ssl.ca.location"),
        ("tls_cert", "ssl.certificate.location"),
        ("tls_key", "ssl.key.location"),
    ):
        if options.get(key):
            conf[prop] = _pem_or_path(options[key], key)
    if _truthy(options.get("tls_insecure_skip_verify", "")):
        conf["enable.ssl.certificate.verification"] = False
    for key, value in options.items():
        if key.startswith("librdkafka."):
            conf[key.removeprefix("librdkafka.")] = value
    return conf


class KafkaSource:
    """Consumes Kafka topics through a consumer group (see the module docstring)."""

    prefetch = True

    def __init__(self, settings: SourceSettings) -> None:
        o = settings.config.options
        self.topics = [t.strip() for t in require(o, "topics", "kafka").split(",") if t.strip()]
        self.group = o.get("consumer_group", "").strip() or f"raptor.{settings.data_source}"
        static = o.get("static_membership", "true")
        self.conf = kafka_config(o, self.group, settings.consumer if _truthy(static) else None)
        self.dead_letter_target = settings.config.dead_letter or f"{self.topics[0]}.dlq"
        self.description = f"kafka topics {','.join(self.topics)} (group {self.group})"
        self.data_source = settings.data_source
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="raptor-kafka")
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._resume: Mapping[str, str] = {}
        self._lag: dict[str, int] = {}

    async def _call(self, fn: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    # -- life cycle -------------------------------------------------------------------------

    async def start(self, resume: Mapping[str, str]) -> None:
        self._resume = dict(resume)
        if self._consumer is None:
            await self._call(self._start)

    def _start(self) -> None:
        try:
            consumer = Consumer(self.conf, logger=log)
            consumer.subscribe(self.topics, on_assign=self._on_assign)
        except KafkaException as exc:
            raise SourceError(f"{self.description}: {exc}") from exc
        self._consumer = consumer

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """In the consumer thread: seek past positions already applied to state."""
        if not self._resume:
            return
        try:
            committed = {
                (tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, 10)
            }
        except KafkaException as exc:
            log.warning("%s: cannot read committed offsets: %s", self.description, exc)
            return
        changed = False
        for tp in partitions:
            recorded = self._resume.get(f"{tp.topic}/{tp.partition}")
            if recorded is None:
                continue
            nxt = int(recorded) + 1
            have = committed.get((tp.topic, tp.partition), OFFSET_INVALID)
            if have >= 0 and have >= nxt:
                continue
            try:
                low, high = consumer.get_watermark_offsets(tp, timeout=5)
            except KafkaException:
                continue
            if low <= nxt <= high:
                tp.offset = nxt
                changed = True
            else:
                log.warning(
                    "%s: position %s recorded in state for %s/%s is outside the partition "
                    "[%s, %s]; ignoring it (topic re-created? set checkpoint_epoch)",
                    self.description,
                    recorded,
                    tp.topic,
                    tp.partition,
                    low,
                    high,
                )
        if changed:
            consumer.assign(partitions)

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        if consumer is not None:
            await self._call(consumer.close)
        if producer is not None:
            await self._call(producer.flush, 5.0)
        self._thread.shutdown(wait=False)

    # -- consuming --------------------------------------------------------------------------

    async def fetch(self, max_messages: int, wait: float) -> list[Message]:
        if self._consumer is None:
            raise SourceError(f"{self.description}: not started")
        return list(await self._call(self._fetch, self._consumer, max_messages, wait))

    def _fetch(self, consumer: Consumer, n: int, timeout: float) -> list[Message]:
        try:
            raw = consumer.consume(n, timeout)
        except KafkaException as exc:
            raise SourceError(f"{self.description}: {exc}") from exc
        out: list[Message] = []
        for m in raw:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal():
                    raise SourceError(f"{self.description}: fatal error: {err}")
                log.warning("%s: %s", self.description, err)
                continue
            topic, part, offset = m.topic(), m.partition(), m.offset()
            kind, ts = m.timestamp()
            value = m.value()
            out.append(
                Message(
                    value if value is not None else b"",
                    f"{topic}/{part}",
                    str(offset),
                    ts * 1000 if kind != 0 and ts > 0 else None,
                    m.key(),
                    (topic, part, offset),
                )
            )
        if out:
            self._update_lag(consumer)
        return out

    def _update_lag(self, consumer: Consumer) -> None:
        try:
            for tp in consumer.position(consumer.assignment()):
                if tp.offset < 0:
                    continue
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0:
                    self._lag[f"{tp.topic}/{tp.partition}"] = max(0, high - tp.offset)
        except KafkaException:
            pass

    async def ack(self, messages: Sequence[Message]) -> None:
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            topic, part, offset = m.handle
            if offset >= last.get((topic, part), -1):
                last[(topic, part)] = offset
        if not last or self._consumer is None:
            return
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in last.items()]
        await self._call(self._commit, self._consumer, offsets)

    def _commit(self, consumer: Consumer, offsets: list[TopicPartition]) -> None:
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            code = err.code() if isinstance(err, KafkaError) else None
            if code in _SOFT_COMMIT_ERRORS:
                log.info("%s: commit skipped (%s); state is checkpointed", self.description, err)
                return
            raise SourceError(f"{self.description}: commit failed: {exc}") from exc

    def lag(self) -> Mapping[str, int]:
        return self._lag

    # -- dead letters -----------------------------------------------------------------------

    async def dead_letter(self, entries: Sequence[DeadLetter]) -> None:
        await self._call(self._dead_letter, list(entries))

    def _dead_letter(self, entries: list[DeadLetter]) -> None:
        if self._producer is None:
            conf = {
                k: v
                for k, v in self.conf.items()
                if k.startswith(("bootstrap.", "security.", "sasl.", "ssl.", "client."))
            }
            conf.update({"enable.idempotence": True, "acks": "all", "linger.ms": 5})
            self._producer = Producer(conf, logger=log)
        producer = self._producer
        failures: list[str] = []

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                failures.append(str(err))

        now = time.time_ns() // 1000
        for e in entries:
            doc = dead_letter_record(e, self.data_source, now)
            producer.produce(
                self.dead_letter_target,
                value=msgspec.json.encode(doc),
                key=e.message.key,
                headers=[("reason", e.reason.encode()), ("datasource", self.data_source.encode())],
                on_delivery=delivered,
            )
        remaining = producer.flush(10.0)
        if remaining or failures:
            raise SourceError(
                f"{self.description}: dead letters to {self.dead_letter_target} not delivered: "
                + ("; ".join(failures[:3]) or f"{remaining} pending")
            )
