"""Redis Streams source: a consumer group read with ``XREADGROUP``; the only runner module that
imports ``redis`` (the state store has its own, :mod:`raptor.state.redis`).

Config (SPEC 8.1): ``url`` (``redis://…``, ``rediss://…``), ``stream``, ``consumer_group``
(default ``raptor.<namespace>.<name>``), optional ``consumer`` (default: the runner's stable
identity, the host name), ``payload_field`` (default ``data``: the entry field holding the JSON
row; an entry without it is read as its flat string fields), ``initial_offset``
(``earliest``/``oldest`` = the whole stream, ``latest``/``newest`` = new entries only; used
when the group is created), ``claim_idle`` (default ``60s``), ``dead_letter`` (default
``<stream>.dead``).

Delivery:

* On start the group is created if missing (``MKSTREAM``), then this consumer first re-reads
  **its own pending entries** (delivered before a crash, never acknowledged), in id order,
  then new ones (``>``). A restarted runner with the same consumer name thus resumes at once.
* Pending entries of **other** consumers idle for ``claim_idle`` (a consumer that never came
  back, e.g. a pod with a new name) are taken over and processed first: read with ``XRANGE``
  and acknowledged, but never moved into our pending list (see :meth:`_claim`).
* Partition = ``<stream>@<consumer that first received the entry>``: each consumer receives
  increasing ids, so positions are ordered per partition even with several replicas in one
  group; a taken-over entry keeps its owner's partition. Position = the entry id ``ms-seq`` as
  ``ms`` followed by ``seq`` on 20 digits (ordered as a number). Broker time = the id's ``ms``.
* ``XACK`` after the state write; dead letters are ``XADD``-ed to the dead letter stream with
  fields ``reason``, ``error``, ``datasource``, ``partition``, ``position``, ``data``.
* ``lag`` comes from ``XINFO GROUPS`` (Redis 7+), refreshed every few seconds.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import redis.asyncio as aredis
from redis.exceptions import RedisError, ResponseError

from raptor.errors import ManifestError
from raptor.runners.config import config_duration
from raptor.runners.dead_letters import dead_letter_record
from raptor.runners.source import DeadLetter, Message, SourceError, SourceSettings, require

__all__ = ["RedisStreamSource", "stream_position"]

_CLAIM_EVERY = 10.0  # seconds between looks at other consumers' pending entries
_LAG_EVERY = 5.0


def stream_position(entry_id: bytes | str) -> tuple[str, int]:
    """``(position, broker time µs)`` of a stream entry id. Pure.

    >>> stream_position(b"1700000000000-5")  # milliseconds, then the sequence on 20 digits
    ('170000000000000000000000000000005', 1700000000000000)
    """
    if type(entry_id) is bytes:
        ms_b, _, seq_b = entry_id.partition(b"-")
        return (ms_b + (seq_b or b"0").zfill(20)).decode(), int(ms_b) * 1000
    ms, _, seq = str(entry_id).partition("-")
    return ms + (seq or "0").zfill(20), int(ms) * 1000


def _entries(reply: Any) -> list[Any]:
    """The entries of a one-stream ``XREADGROUP`` reply (RESP3 map or RESP2 array). Pure."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(next(iter(reply.values())))
    return list(reply[0][1])


class RedisStreamSource:
    """Consumes one Redis stream through a consumer group (see the module docstring)."""

    prefetch = True

    def __init__(self, settings: SourceSettings) -> None:
        o = settings.config.options
        self.url = require(o, "url", "redis")
        self.stream = require(o, "stream", "redis")
        self.group = o.get("consumer_group", "").strip() or f"raptor.{settings.data_source}"
        self.consumer = o.get("consumer", "").strip() or settings.consumer
        self.payload_field = (o.get("payload_field", "").strip() or "data").encode()
        initial = o.get("initial_offset", "earliest").strip().lower() or "earliest"
        if initial not in ("earliest", "oldest", "latest", "newest"):
            raise ManifestError(
                f"redis source: initial_offset must be earliest or latest, not {initial!r}",
                field="spec.config",
            )
        self.start_id = "0" if initial in ("earliest", "oldest") else "$"
        self.claim_idle_ms = int(config_duration(o, "claim_idle", 60.0) * 1000)
        self.dead_letter_target = settings.config.dead_letter or f"{self.stream}.dead"
        self.description = (
            f"redis stream {self.stream} (group {self.group}, consumer {self.consumer})"
        )
        self.data_source = settings.data_source
        self._client: aredis.Redis | None = None
        self._own_after: str | None = "0"  # re-reading our pending entries from this id
        self._inflight: set[Any] = set()  # ids taken from other consumers, not acked yet
        self._next_claim = 0.0
        self._next_lag = 0.0
        self._lag: dict[str, int] = {}
        self._partition = f"{self.stream}@{self.consumer}"

    def _redis(self) -> aredis.Redis:
        if self._client is None:
            raise SourceError(f"{self.description}: not started")
        return self._client

    async def start(self, resume: Mapping[str, str]) -> None:
        if self._client is None:
            try:
                self._client = aredis.Redis.from_url(self.url, socket_connect_timeout=5.0)
            except ValueError as exc:
                raise SourceError(f"redis source: bad url: {exc}") from None
        try:
            await self._client.xgroup_create(
                self.stream, self.group, id=self.start_id, mkstream=True
            )
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise SourceError(f"{self.description}: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise SourceError(f"{self.description}: {exc}") from exc
        self._own_after = "0"
        self._next_claim = 0.0

    async def fetch(self, max_messages: int, wait: float) -> list[Message]:
        r = self._redis()
        try:
            now = time.monotonic()
            if now >= self._next_lag:
                self._next_lag = now + _LAG_EVERY
                await self._refresh_lag(r)
            if now >= self._next_claim:
                self._next_claim = now + _CLAIM_EVERY
                claimed = await self._claim(r, max_messages)
                if claimed:
                    self._next_claim = 0.0  # more may be waiting
                    return claimed
            if self._own_after is not None:
                reply: Any = await self._xreadgroup(r, self._own_after, max_messages, None)
                entries = _entries(reply)
                if entries:
                    last = entries[-1][0]
                    self._own_after = last.decode() if isinstance(last, bytes) else str(last)
                    return self._messages(entries, self._partition)
                self._own_after = None  # caught up with our own pending entries
            reply = await self._xreadgroup(r, ">", max_messages, max(1, int(wait * 1000)))
        except ResponseError as exc:
            if "NOGROUP" in str(exc):
                await self.start({})
                return []
            raise SourceError(f"{self.description}: {exc}") from exc
        except (RedisError, OSError) as exc:
            raise SourceError(f"{self.description}: {exc}") from exc
        return self._messages(_entries(reply), self._partition)

    async def _claim(self, r: aredis.Redis, max_messages: int) -> list[Message]:
        """Take over other consumers' entries idle for ``claim_idle``.

        They are read (``XRANGE``) and acknowledged, never moved into our own pending list: a
        crash before the ack leaves them where they were, and whoever reads them next (we, or
        their owner coming back) applies them under the same partition, the owner's — so the
        checkpoint fences stay in one order per partition."""
        pending: Any = await r.xpending_range(
            self.stream, self.group, min="-", max="+", count=max_messages, idle=self.claim_idle_ms
        )
        mine = self.consumer.encode()
        by_owner: dict[bytes, list[Any]] = {}
        for p in pending or ():
            owner = p["consumer"]
            owner = owner if isinstance(owner, bytes) else str(owner).encode()
            entry_id = p["message_id"]
            if owner != mine and entry_id not in self._inflight:
                by_owner.setdefault(owner, []).append(entry_id)
        out: list[Message] = []
        for owner, ids in by_owner.items():
            async with r.pipeline(transaction=False) as pipe:
                for entry_id in ids:
                    pipe.xrange(self.stream, min=entry_id, max=entry_id, count=1)
                found: list[Any] = await pipe.execute()
            live = [rows[0] for rows in found if rows]
            present = {e[0] for e in live}
            gone = [i for i in ids if i not in present]
            if gone:  # deleted from the stream (XDEL/MAXLEN): nothing left to process
                await r.xack(self.stream, self.group, *gone)
            self._inflight.update(present)
            out += self._messages(live, f"{self.stream}@{owner.decode()}")
        return out

    async def _xreadgroup(self, r: aredis.Redis, after: str, count: int, block: int | None) -> Any:
        """``XREADGROUP`` with the raw reply (entries as ``[id, [field, value, ...]]``): redis-py's
        reply callbacks (a dict per entry) cost more than the rest of reading."""
        args: list[Any] = ["XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count]
        if block is not None:
            args += ["BLOCK", block]
        args += ["STREAMS", self.stream, after]
        pool = r.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_command(*args)
            return await conn.read_response()
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)

    async def _xack(self, r: aredis.Redis, ids: list[Any]) -> None:
        """``XACK`` of many ids, RESP-packed here: redis-py's generic packer costs more than
        the command's round trip for a 10,000-id batch."""
        if set(map(type, ids)) != {bytes}:
            await r.xack(self.stream, self.group, *ids)
            return
        head = [b"XACK", self.stream.encode(), self.group.encode()]
        parts = [b"*%d\r\n" % (len(ids) + 3)]
        parts += [b"$%d\r\n%b\r\n" % (len(a), a) for a in head]
        sizes = set(map(len, ids))
        if len(sizes) == 1:  # ids of one length (the common case): one join
            head_of = b"$%d\r\n" % sizes.pop()
            parts += [head_of, (b"\r\n" + head_of).join(ids), b"\r\n"]
        else:
            parts += [b"$%d\r\n%b\r\n" % (len(i), i) for i in ids]
        pool = r.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command([b"".join(parts)], check_health=False)
            reply = await conn.read_response()
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)
        if isinstance(reply, ResponseError):
            raise reply

    def _messages(self, entries: Sequence[Any], partition: str) -> list[Message]:
        field = self.payload_field
        out: list[Message] = []
        append = out.append
        last_ms: Any = None
        ms = ""
        broker_time = 0
        for entry_id, fields in entries:
            if fields is None:  # deleted from the stream while pending
                continue
            if type(entry_id) is bytes:  # stream_position, inlined (entries of one ms share it)
                ms_b, _, seq_b = entry_id.partition(b"-")
                if ms_b != last_ms:
                    last_ms, ms, broker_time = ms_b, ms_b.decode(), int(ms_b) * 1000
                position = ms + (seq_b or b"0").decode().zfill(20)
            else:
                position, broker_time = stream_position(entry_id)
            if type(fields) is list:
                if len(fields) == 2 and fields[0] == field:
                    append(Message(fields[1], partition, position, broker_time, None, entry_id))
                    continue
                fields = dict(zip(fields[::2], fields[1::2], strict=True))
            body = fields.get(field)
            payload: bytes | Mapping[str, Any]
            if body is not None:
                payload = body
            else:
                payload = {
                    (k.decode() if isinstance(k, bytes) else k): (
                        v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v
                    )
                    for k, v in fields.items()
                }
            out.append(Message(payload, partition, position, broker_time, None, entry_id))
        return out

    async def _refresh_lag(self, r: aredis.Redis) -> None:
        try:
            groups = await r.xinfo_groups(self.stream)
        except (RedisError, OSError):
            return
        for g in groups:
            name = g.get("name")
            if name in (self.group, self.group.encode()):
                lag = g.get("lag")
                if isinstance(lag, int):
                    self._lag = {self.stream: lag}

    async def ack(self, messages: Sequence[Message]) -> None:
        if not messages:
            return
        try:
            ids = [m.handle for m in messages]
            await self._xack(self._redis(), ids)
            if self._inflight:
                self._inflight.difference_update(ids)
        except (RedisError, OSError) as exc:
            raise SourceError(f"{self.description}: XACK failed: {exc}") from exc

    async def dead_letter(self, entries: Sequence[DeadLetter]) -> None:
        r = self._redis()
        now = time.time_ns() // 1000
        try:
            async with r.pipeline(transaction=False) as pipe:
                for e in entries:
                    doc = dead_letter_record(e, self.data_source, now)
                    message = doc.pop("message")
                    fields: dict[str, str | bytes] = {
                        k: str(v) for k, v in doc.items() if v is not None
                    }
                    fields["data"] = (
                        message if isinstance(message, str) else msgspec.json.encode(message)
                    )
                    pipe.xadd(self.dead_letter_target, fields)  # type: ignore[arg-type]
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise SourceError(f"{self.description}: dead letter XADD failed: {exc}") from exc

    def lag(self) -> Mapping[str, int]:
        return self._lag

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()
