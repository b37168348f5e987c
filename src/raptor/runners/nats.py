"""NATS JetStream source (nats-py); the only module that imports ``nats``.

Config (SPEC 8.1): ``url`` (``nats://host:4222``, several comma-separated), ``stream``,
``subject``, ``durable`` (default ``raptor_<namespace>_<name>``), ``initial_offset``
(``earliest`` = deliver all, ``latest`` = new messages only; used when the durable consumer is
created), ``ack_wait`` (default ``5s``), ``dead_letter`` (default ``<subject>.dead``, which
must be captured by a stream: dead letters are published with JetStream acknowledgements),
optional ``user``/``password``/``token`` and ``tls_ca``/``tls_cert``/``tls_key`` files.

Delivery:

* A **durable pull consumer** with explicit acks and ``max_ack_pending`` = the batch size:
  at most one batch is unacknowledged, across every replica of the runner. So messages are
  applied in stream order even with several replicas, and after a crash nothing new is
  delivered before the unacknowledged batch is re-delivered (``ack_wait`` after the crash —
  the restart latency).
* Partition = the stream (plus its creation time, so a re-created stream starts afresh),
  position = the stream sequence, broker time = the message's timestamp.
* Acks are sent after the state write and flushed once per batch. ``lag`` is the consumer's
  ``num_pending``, refreshed every few seconds.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import nats
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import Error as JetStreamError

from raptor.errors import ManifestError
from raptor.runners.config import config_duration
from raptor.runners.dead_letters import dead_letter_record
from raptor.runners.source import DeadLetter, Message, SourceError, SourceSettings, require

__all__ = ["NatsSource"]

_LAG_EVERY = 5.0


class NatsSource:
    """Consumes a JetStream stream through a durable pull consumer (see the module doc)."""

    prefetch = False  # max_ack_pending = one batch: the next fetch waits for the ack

    def __init__(self, settings: SourceSettings) -> None:
        o = settings.config.options
        self.urls = [u.strip() for u in require(o, "url", "nats").split(",") if u.strip()]
        self.stream = require(o, "stream", "nats")
        self.subject = require(o, "subject", "nats")
        default_durable = re.sub(r"[^A-Za-z0-9_-]", "_", f"raptor_{settings.data_source}")
        self.durable = o.get("durable", "").strip() or default_durable
        initial = o.get("initial_offset", "earliest").strip().lower() or "earliest"
        if initial not in ("earliest", "oldest", "latest", "newest"):
            raise ManifestError(
                f"nats source: initial_offset must be earliest or latest, not {initial!r}",
                field="spec.config",
            )
        self.deliver = DeliverPolicy.ALL if initial in ("earliest", "oldest") else DeliverPolicy.NEW
        self.ack_wait = config_duration(o, "ack_wait", 5.0)
        self.max_batch = settings.max_batch
        self.dead_letter_target = settings.config.dead_letter or f"{self.subject}.dead"
        self.description = (
            f"nats stream {self.stream} subject {self.subject} (durable {self.durable})"
        )
        self.data_source = settings.data_source
        self.consumer_name = settings.consumer
        self._auth = {k: o[k] for k in ("user", "password", "token") if o.get(k)}
        self._tls = {k: o[k] for k in ("tls_ca", "tls_cert", "tls_key") if o.get(k)}
        self._nc: Any = None
        self._js: Any = None
        self._sub: Any = None
        self._partition = self.stream
        self._lag: dict[str, int] = {}
        self._next_lag = 0.0

    async def start(self, resume: Mapping[str, str]) -> None:
        try:
            if self._nc is None:
                kwargs: dict[str, Any] = dict(self._auth)
                if self._tls:
                    import ssl

                    ctx = ssl.create_default_context(cafile=self._tls.get("tls_ca"))
                    if self._tls.get("tls_cert"):
                        ctx.load_cert_chain(self._tls["tls_cert"], self._tls.get("tls_key"))
                    kwargs["tls"] = ctx
                self._nc = await nats.connect(
                    servers=self.urls,
                    name=f"raptor-runner {self.data_source} {self.consumer_name}",
                    connect_timeout=5,
                    max_reconnect_attempts=-1,
                    allow_reconnect=True,
                    **kwargs,
                )
                self._js = self._nc.jetstream()
            info = await self._js.stream_info(self.stream)
            created = getattr(info, "created", None)
            if created:
                self._partition = f"{self.stream}@{created}"
            config = ConsumerConfig(
                durable_name=self.durable,
                ack_policy=AckPolicy.EXPLICIT,
                deliver_policy=self.deliver,
                ack_wait=self.ack_wait,
                max_ack_pending=self.max_batch,
                filter_subject=self.subject,
            )
            self._sub = await self._js.pull_subscribe(
                self.subject, durable=self.durable, stream=self.stream, config=config
            )
        except (NatsError, JetStreamError, OSError) as exc:
            raise SourceError(f"{self.description}: {exc or type(exc).__name__}") from exc

    async def fetch(self, max_messages: int, wait: float) -> list[Message]:
        if self._sub is None:
            raise SourceError(f"{self.description}: not started")
        await self._refresh_lag()
        try:
            msgs = await self._sub.fetch(min(max_messages, self.max_batch), timeout=wait)
        except NatsTimeout:
            return []
        except (NatsError, JetStreamError, OSError) as exc:
            raise SourceError(f"{self.description}: {exc or type(exc).__name__}") from exc
        out: list[Message] = []
        for m in msgs:
            md = m.metadata
            ts = md.timestamp
            out.append(
                Message(
                    m.data,
                    self._partition,
                    str(md.sequence.stream),
                    int(ts.timestamp() * 1_000_000) if ts is not None else None,
                    None,
                    m,
                )
            )
        return out

    async def _refresh_lag(self) -> None:
        now = time.monotonic()
        if now < self._next_lag or self._sub is None:
            return
        self._next_lag = now + _LAG_EVERY
        try:
            info = await self._sub.consumer_info()
        except (NatsError, JetStreamError, OSError):
            return
        self._lag = {self.stream: int(info.num_pending or 0)}

    async def ack(self, messages: Sequence[Message]) -> None:
        try:
            for m in messages:
                await m.handle.ack()
            await self._nc.flush(timeout=10)
        except (NatsError, JetStreamError, OSError) as exc:
            raise SourceError(
                f"{self.description}: ack failed: {exc or type(exc).__name__}"
            ) from exc

    async def dead_letter(self, entries: Sequence[DeadLetter]) -> None:
        now = time.time_ns() // 1000
        try:
            for e in entries:
                doc = dead_letter_record(e, self.data_source, now)
                await self._js.publish(
                    self.dead_letter_target,
                    msgspec.json.encode(doc),
                    timeout=10,
                    headers={"reason": e.reason, "datasource": self.data_source},
                )
        except (NatsError, JetStreamError, OSError) as exc:
            raise SourceError(
                f"{self.description}: dead letter to {self.dead_letter_target} failed "
                f"(is the subject captured by a stream?): {exc or type(exc).__name__}"
            ) from exc

    def lag(self) -> Mapping[str, int]:
        return self._lag

    async def close(self) -> None:
        nc, self._nc = self._nc, None
        self._sub = self._js = None
        if nc is not None:  # acks were flushed by ack(); nothing else is owed to the server
            with contextlib.suppress(NatsError, JetStreamError, OSError):
                await nc.close()
