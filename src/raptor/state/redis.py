"""The Redis :class:`~raptor.state.StateStore`: production state, shared by stateless replicas.

The only module of Raptor that imports ``redis`` (redis-py's asyncio client, with hiredis).
It behaves exactly like :class:`~raptor.state.memory.MemoryStateStore` (same conformance suite);
``docs/state-redis.md`` documents the key layout with examples.

Design:

* **Keys** contain the feature FQN and a hash tag scoped to ``(feature, entity)``:
  ``raptor:{<fqn>|<entity>}:v`` (values), ``…:w:<g>:<over>`` (window buckets) and
  ``…:wf:<g>:<over>`` (future-dated events). Every script touches only keys of one
  ``(feature, entity)``, so one hash slot: Cluster-safe, and a Cluster spreads each feature.
* **Atomicity**: each write and each window add is one Lua script (EVALSHA; on NOSCRIPT, after
  a restart or a SCRIPT FLUSH, the scripts are loaded and the calls re-sent). The formats shared
  with Lua are in
  :mod:`raptor.state.redis_scripts`. Ints stay exact (split into 32-bit halves in Lua).
* **Reads** of values are plain ``GET``/``MGET`` (a value and its previous versions are one
  string); expiry is checked against the ``now`` passed, so a read never returns a value expired
  at ``now`` even if Redis has not dropped it yet. Window
  reads run one script that folds due future events and merges the cover (computed here by
  :meth:`WindowSpec.cover`, the single definition) inside Redis: one round trip.
* **Batches** (:meth:`read_batch`, :meth:`apply`) are one non-transactional pipeline: one round
  trip per node. Each item is atomic; a batch is not (Redis Cluster cannot be). Window adds to
  one (feature, entity, window) in a batch become one script call.
* **TTLs** are Redis' garbage collection, not the semantics: a key expires
  ``expiry - now`` after the write by Redis' wall clock (relative, so clock skew between hosts
  and injected clocks cannot drop live data early), never sooner than ``ttl_floor``.
* **Failures**: every Redis error or timeout becomes :class:`~raptor.errors.StateUnavailable`
  within ``timeout`` (no client-side retries; one deadline over the whole call). Broken pooled
  connections are replaced on the next call, so the store recovers by itself when Redis returns.
  A value a Lua script refuses (INCR of a non-number, int overflow) raises
  :class:`~raptor.errors.ValueTypeError`.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
import redis.asyncio as aredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError, ResponseError

from raptor.api.primitives import INT64_MAX, INT64_MIN
from raptor.api.timeutil import format_duration
from raptor.api.windows import DEFAULT_GRACE, Partial, WindowSpec
from raptor.errors import StateUnavailable, ValueTypeError
from raptor.state import (
    CHECKPOINT_TTL,
    Positioned,
    Stamped,
    ValueRead,
    ValueWrite,
    WindowAdd,
    WindowRead,
    WriteOp,
    WritePolicy,
)
from raptor.state.redis_scripts import (
    FENCED_WINDOW_ADD,
    FENCED_WRITE,
    READ_WINDOW,
    RECORD_POSITIONS,
    WINDOW_ADD,
    WRITE,
    decode_partial,
    encode_event,
    encode_events,
    pack_int_event,
)
from raptor.state.urls import RedisTarget, parse_redis_url

__all__ = ["DEFAULT_TIMEOUT", "RedisStateStore"]

DEFAULT_TIMEOUT = 2.0
"""Seconds a state call may take before it fails with StateUnavailable (SPEC 8.1)."""

_Cmd = tuple[Any, ...]
_Pending = tuple[list[tuple[int, Any]], list[tuple[int, Any]]]
"""Split window events of one key: ``(level-0 bucket, value)`` and future ``(time, value)``."""
_ENTRY = struct.Struct(">ddI")
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()
_OPS = {WriteOp.SET: b"s", WriteOp.APPEND: b"a", WriteOp.INCR: b"i"}
_SCRIPTS = {s.sha: s for s in (WRITE, WINDOW_ADD, READ_WINDOW)}
_MGET_CHUNK = 1000
_GROUPS_PER_CALL = 64
"""Window groups (feature, entity, partition) per fenced script call outside Cluster."""


class _Transport(Protocol):
    async def execute(self, cmds: Sequence[_Cmd]) -> list[Any]:
        """Send commands in one round trip per node; error replies come back as exceptions."""
        ...

    async def load(self, sources: Sequence[str]) -> None:
        """Load scripts into the script cache of every node."""
        ...

    async def aclose(self) -> None: ...


def _pack(cmds: Sequence[_Cmd]) -> list[bytes]:
    """RESP-encode commands (args are bytes, str or int). Several times faster than redis-py's
    generic packer, which dominates a 500-command batch otherwise."""
    out: list[bytes] = []
    append = out.append
    for cmd in cmds:
        append(b"*%d\r\n" % len(cmd))
        for a in cmd:
            if type(a) is bytes:
                b = a
            elif type(a) is str:
                b = a.encode()
            elif type(a) is int:
                b = b"%d" % a
            else:
                raise TypeError(f"cannot send {type(a).__name__} to Redis")
            if len(b) < 4096:
                append(b"$%d\r\n%b\r\n" % (len(b), b))
            else:
                append(b"$%d\r\n" % len(b))
                append(b)
                append(b"\r\n")
    return out


class _PoolTransport:
    """One server (or a Sentinel-managed master): a pipeline on one pooled connection."""

    def __init__(self, client: aredis.Redis, closers: Sequence[aredis.Redis] = ()) -> None:
        self._client = client
        self._pool = client.connection_pool
        self._closers = tuple(closers)

    async def execute(self, cmds: Sequence[_Cmd]) -> list[Any]:
        pool = self._pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await conn.send_packed_command(_pack(cmds), check_health=False)
            out: list[Any] = []
            for _ in cmds:
                try:
                    out.append(await conn.read_response())
                except ResponseError as exc:
                    out.append(exc)
            return out
        except BaseException:
            await conn.disconnect(nowait=True)
            raise
        finally:
            await pool.release(conn)

    async def load(self, sources: Sequence[str]) -> None:
        for reply in await self.execute([("SCRIPT", "LOAD", src) for src in sources]):
            if isinstance(reply, Exception):
                raise reply

    async def aclose(self) -> None:
        await self._client.aclose()
        for c in self._closers:
            await c.aclose()


class _ClusterTransport:
    """Redis Cluster: redis-py groups a pipeline by node and sends to the nodes concurrently."""

    def __init__(self, client: RedisCluster) -> None:
        self._client = client

    async def execute(self, cmds: Sequence[_Cmd]) -> list[Any]:
        pipe = self._client.pipeline()
        for cmd in cmds:
            if cmd[0] == "MGET":  # keys of many slots: one GET each, grouped by node
                for key in cmd[1:]:
                    pipe.execute_command("GET", key)
            else:
                pipe.execute_command(*cmd)
        flat = iter(await pipe.execute(raise_on_error=False))
        out: list[Any] = []
        for cmd in cmds:
            if cmd[0] == "MGET":
                got = [next(flat) for _ in cmd[1:]]
                error = next((r for r in got if isinstance(r, Exception)), None)
                out.append(error if error is not None else got)
            else:
                out.append(next(flat))
        return out

    async def load(self, sources: Sequence[str]) -> None:
        for src in sources:
            await self._client.script_load(src)  # every primary

    async def aclose(self) -> None:
        await self._client.aclose()


def _encode(value: Any) -> bytes:
    """msgpack bytes of a value; naive datetimes are taken as UTC (SPEC 8)."""
    if type(value) is datetime and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif type(value) is list and value and type(value[0]) is datetime:
        value = [v.replace(tzinfo=UTC) if v.tzinfo is None else v for v in value]
    try:
        return _ENCODER.encode(value)
    except (OverflowError, TypeError) as exc:
        raise ValueTypeError(f"cannot store {type(value).__name__} value: {exc}") from None


class _Window:
    """Per-WindowSpec constants: key suffixes and the script's fixed arguments."""

    __slots__ = ("args", "covers", "pending", "values")

    def __init__(self, w: WindowSpec, floor_ms: int) -> None:
        ident = f"{format_duration(w.granularity)}:{format_duration(w.over)}"
        if w.grace != DEFAULT_GRACE:
            ident += f":{format_duration(w.grace)}"
        self.values = f":w:{ident}"
        self.pending = f":wf:{ident}"
        self.args = (w.granularity, w.over + w.grace, w.levels, floor_ms)
        self.covers: dict[int, tuple[bytes, ...]] = {}


class _Group:
    """The window events of one (feature, entity, partition) in a checkpointed batch, packed
    for Lua as they come: level-0 buckets (``regular``) and future events, with their
    positions and the index of their write."""

    __slots__ = ("fown", "fpos", "future", "g", "oldest", "regular", "rown", "rpos", "window")

    def __init__(self, window: WindowSpec, now: int) -> None:
        self.window = window
        self.g = g = window.granularity
        self.oldest = now // g - window.buckets + 1
        self.regular = bytearray()
        self.future = bytearray()
        self.rpos: list[str] = []
        self.fpos: list[str] = []
        self.rown: list[int] = []
        self.fown: list[int] = []


class RedisStateStore:
    """State in Redis (standalone, Sentinel or Cluster). Build it with :meth:`from_url`."""

    def __init__(
        self,
        transport: _Transport,
        *,
        where: str = "redis",
        prefix: str = "raptor",
        timeout: float = DEFAULT_TIMEOUT,
        ttl_floor: float = 1.0,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._transport = transport
        self._where = where
        self._prefix = prefix
        self._timeout = timeout
        self._floor_ms = max(0, round(ttl_floor * 1000))
        self._windows: dict[WindowSpec, _Window] = {}
        self._closed = False

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        db: int | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        prefix: str | None = None,
        ttl_floor: float = 1.0,
        max_connections: int | None = None,
    ) -> RedisStateStore:
        """Connect lazily to the Redis that ``url`` names (see :mod:`raptor.state.urls`).

        Keyword arguments override what the URL says. ``timeout`` bounds every call (connect
        included); ``ttl_floor`` is the shortest TTL given to a key (seconds); ``prefix``
        starts every key (default ``raptor``). Raises ``ValueError`` for a malformed URL.
        """
        t = parse_redis_url(url)
        if db is not None and t.kind == "cluster" and db:
            raise ValueError("Redis Cluster only has db 0")
        common: dict[str, Any] = {
            "username": username if username is not None else t.username,
            "password": password if password is not None else t.password,
            "socket_timeout": None,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        if t.tls:
            common["ssl"] = True
            common.update(t.ssl)
        conn_max = max_connections or t.max_connections
        transport = _connect(t, common, db if db is not None else t.db, conn_max, timeout)
        return cls(
            transport,
            where=t.describe(),
            prefix=prefix or t.prefix,
            timeout=timeout,
            ttl_floor=ttl_floor,
        )

    # -- keys -----------------------------------------------------------------------------

    def value_key(self, fqn: str, entity: str) -> str:
        """The key of a feature's values for one entity (documented in docs/state-redis.md)."""
        return f"{self._prefix}:{{{fqn}|{entity}}}:v"

    def window_keys(self, fqn: str, entity: str, window: WindowSpec) -> tuple[str, str]:
        """The bucket hash and the future-events sorted set of one windowed feature+entity."""
        w = self._window(window)
        base = f"{self._prefix}:{{{fqn}|{entity}}}"
        return base + w.values, base + w.pending

    def _window(self, window: WindowSpec) -> _Window:
        w = self._windows.get(window)
        if w is None:
            w = self._windows[window] = _Window(window, self._floor_ms)
        return w

    # -- commands -------------------------------------------------------------------------

    @staticmethod
    def _read_result(blob: bytes | None, versions: int, now: int) -> list[Stamped | None]:
        out: list[Stamped | None] = [None] * (versions + 1)
        if blob is None:
            return out
        view = memoryview(blob)
        pos, end = 0, len(blob)
        for i in range(versions + 1):
            if pos >= end:
                break
            ts, alive_until, size = _ENTRY.unpack_from(blob, pos)
            pos += _ENTRY.size
            if now <= alive_until:
                out[i] = Stamped(_DECODER.decode(view[pos : pos + size]), int(ts))
            pos += size
        return out

    def _write_cmd(
        self,
        fqn: str,
        entity: str,
        op: WriteOp,
        value: Any,
        timestamp: int,
        policy: WritePolicy,
        now: int,
    ) -> _Cmd:
        return (
            "EVALSHA",
            WRITE.sha,
            1,
            self.value_key(fqn, entity),
            _OPS[op],
            _encode(value),
            timestamp,
            now,
            policy.staleness,
            policy.versions,
            policy.version_ttl,
            self._floor_ms,
        )

    @staticmethod
    def _write_result(reply: Any, op: WriteOp, value: Any, timestamp: int) -> Stamped | None:
        if reply is None:
            return None
        if op is WriteOp.SET:
            return Stamped(list(value) if type(value) is list else value, timestamp)
        return Stamped(_DECODER.decode(reply), timestamp)

    @staticmethod
    def _split(
        window: WindowSpec, events: Sequence[tuple[int, Any]], now: int, into: _Pending
    ) -> int:
        """Sort events into level-0 buckets and future events (late ones are dropped, as
        SPEC 4.3 says); return how many were not late."""
        g = window.granularity
        oldest = now // g - window.buckets + 1
        regular, future = into
        n = len(regular) + len(future)
        for t, x in events:
            if t > now:
                future.append((t, x))
            elif t // g >= oldest:
                regular.append((t // g, x))
        return len(regular) + len(future) - n

    def _add_cmd(
        self, fqn: str, entity: str, window: WindowSpec, pending: _Pending, now: int
    ) -> _Cmd:
        """The script call that adds the split events of one (feature, entity, window)."""
        try:
            ev, fu = encode_events(pending[0]), encode_events(pending[1])
        except (OverflowError, struct.error) as exc:
            raise ValueTypeError(f"window value of {fqn}: {exc}") from None
        hkey, zkey = self.window_keys(fqn, entity, window)
        w = self._window(window)
        return ("EVALSHA", WINDOW_ADD.sha, 2, hkey, zkey, now, *w.args, ev, fu)

    def _window_read_cmd(self, fqn: str, entity: str, window: WindowSpec, at: int) -> _Cmd:
        w = self._window(window)
        b = at // window.granularity
        fields = w.covers.get(b)
        if fields is None:
            if len(w.covers) > 64:
                w.covers.clear()
            fields = w.covers[b] = tuple(f"{lv}:{i}".encode() for lv, i in window.cover(at))
        hkey, zkey = self.window_keys(fqn, entity, window)
        return ("EVALSHA", READ_WINDOW.sha, 2, hkey, zkey, at, *w.args, window.buckets, *fields)

    # -- execution ------------------------------------------------------------------------

    async def _call(self, cmds: list[_Cmd]) -> list[Any]:
        try:
            async with asyncio.timeout(self._timeout):
                replies = await self._transport.execute(cmds)
                missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
                if missing:  # first use, or Redis restarted: load once, then run them again
                    shas = dict.fromkeys(cmds[i][1] for i in missing)
                    await self._transport.load([_SCRIPTS[sha].source for sha in shas])
                    again = await self._transport.execute([cmds[i] for i in missing])
                    for i, r in zip(missing, again, strict=True):
                        replies[i] = r
        except (RedisError, OSError, TimeoutError) as exc:
            why = str(exc) or type(exc).__name__
            raise StateUnavailable(f"{self._where} unavailable: {why}") from exc
        for r in replies:
            if isinstance(r, ResponseError):
                text = str(r)
                if text.startswith("RAPTOR "):
                    raise ValueTypeError(text[7:])
                raise StateUnavailable(f"{self._where} refused a command: {text}") from r
        return replies

    # -- StateStore -----------------------------------------------------------------------

    async def read(self, fqn: str, entity: str, versions: int, now: int) -> list[Stamped | None]:
        (reply,) = await self._call([("GET", self.value_key(fqn, entity))])
        return self._read_result(reply, versions, now)

    async def write(
        self,
        fqn: str,
        entity: str,
        op: WriteOp,
        value: Any,
        timestamp: int,
        policy: WritePolicy,
        now: int,
    ) -> Stamped | None:
        cmd = self._write_cmd(fqn, entity, op, value, timestamp, policy, now)
        (reply,) = await self._call([cmd])
        return self._write_result(reply, op, value, timestamp)

    async def window_add(
        self,
        fqn: str,
        entity: str,
        window: WindowSpec,
        events: Sequence[tuple[int, Any]],
        now: int,
    ) -> int:
        pending: _Pending = ([], [])
        counted = self._split(window, events, now, pending)
        if counted:
            await self._call([self._add_cmd(fqn, entity, window, pending, now)])
        return counted

    async def window_read(self, fqn: str, entity: str, window: WindowSpec, at: int) -> Partial:
        (reply,) = await self._call([self._window_read_cmd(fqn, entity, window, at)])
        return decode_partial(reply)

    async def read_batch(
        self, reads: Sequence[ValueRead | WindowRead], now: int
    ) -> list[list[Stamped | None] | Partial]:
        if not reads:
            return []
        # All value reads go out as MGETs (one reply each; split per slot on a Cluster),
        # window reads as one script call each, all in one pipeline.
        keys = [self.value_key(r.fqn, r.entity) for r in reads if isinstance(r, ValueRead)]
        cmds: list[_Cmd] = [
            ("MGET", *keys[i : i + _MGET_CHUNK]) for i in range(0, len(keys), _MGET_CHUNK)
        ]
        cmds += [
            self._window_read_cmd(r.fqn, r.entity, r.window, now)
            for r in reads
            if isinstance(r, WindowRead)
        ]
        replies = await self._call(cmds)
        n_mget = -(-len(keys) // _MGET_CHUNK)
        values = iter([blob for chunk in replies[:n_mget] for blob in chunk])
        windows = iter(replies[n_mget:])
        return [
            self._read_result(next(values), r.versions, now)
            if isinstance(r, ValueRead)
            else decode_partial(next(windows))
            for r in reads
        ]

    async def apply(
        self, mutations: Sequence[ValueWrite | WindowAdd], now: int
    ) -> list[Stamped | int | None]:
        # Adds to one (feature, entity, window) are merged into one script call: at one `now`,
        # adding A then B is adding A + B (buckets only expire at `now`, events that are not
        # late never land in them); value writes touch other keys, so order is kept.
        cmds: list[_Cmd] = []
        counts: list[int] = []
        groups: dict[tuple[str, str, WindowSpec], _Pending] = {}
        for m in mutations:
            if isinstance(m, ValueWrite):
                cmds.append(
                    self._write_cmd(m.fqn, m.entity, m.op, m.value, m.timestamp, m.policy, now)
                )
                counts.append(-1)
            else:
                pending = groups.setdefault((m.fqn, m.entity, m.window), ([], []))
                counts.append(self._split(m.window, m.events, now, pending))
        for (fqn, entity, window), pending in groups.items():
            if pending[0] or pending[1]:
                cmds.append(self._add_cmd(fqn, entity, window, pending, now))
        replies = iter(await self._call(cmds) if cmds else ())
        out: list[Stamped | int | None] = []
        for m, counted in zip(mutations, counts, strict=True):
            if isinstance(m, ValueWrite):
                out.append(self._write_result(next(replies), m.op, m.value, m.timestamp))
            else:
                out.append(counted)
        return out

    async def ping(self) -> None:
        reply = (await self._call([("PING",)]))[0]
        if reply not in (True, b"PONG", "PONG"):
            raise StateUnavailable(f"{self._where} answered PING with {reply!r}")

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._transport.aclose()

    # -- checkpoints (raptor.state.CheckpointStore) ----------------------------------------
    #
    # Fences: ``raptor:{<fqn>|<entity>}:ck`` (a hash, field ``<source>|<partition>`` → the last
    # position applied), on the slot of the (feature, entity) it guards, moved by the same
    # script that writes (FENCED_WRITE / FENCED_WINDOW_ADD). Outside Cluster the whole batch is
    # also one MULTI/EXEC, so readers see all of it or none of it. Recorded positions:
    # ``raptor:{<source>}:positions`` (a hash, partition → position), written after the batch.

    checkpoint_ttl: float = CHECKPOINT_TTL

    def fence_key(self, fqn: str, entity: str) -> str:
        """The fence hash of a feature's entity (same hash slot as its values and windows)."""
        return f"{self._prefix}:{{{fqn}|{entity}}}:ck"

    def positions_key(self, source: str) -> str:
        """The hash of the positions recorded for a source."""
        return f"{self._prefix}:{{{source}}}:positions"

    async def apply_checkpointed(
        self,
        writes: Sequence[Positioned],
        now: int,
        source: str,
        positions: Mapping[str, str],
    ) -> list[bool]:
        ttl_ms = max(1, round(self.checkpoint_ttl * 1000))
        out = [True] * len(writes)
        cmds: list[_Cmd] = []
        # per command: the index of a value write, or the (regular, future) write indexes of
        # each of its window groups
        plans: list[int | list[tuple[list[int], list[int]]]] = []
        # A feature has one window, so (fqn, entity, partition) names a group (no WindowSpec
        # hashing per write). Events are packed into level-0 buckets / future events as they
        # come (late ones are dropped, as SPEC 4.3 says).
        groups: dict[tuple[str, str, str], _Group] = {}
        int_event, lo, hi = pack_int_event, INT64_MIN, INT64_MAX
        try:
            for i, (partition, position, m) in enumerate(writes):
                if type(m) is ValueWrite:
                    cmd = self._write_cmd(
                        m.fqn, m.entity, m.op, m.value, m.timestamp, m.policy, now
                    )
                    cmds.append(
                        (
                            "EVALSHA",
                            FENCED_WRITE.sha,
                            2,
                            self.fence_key(m.fqn, m.entity),
                            cmd[3],
                            f"{source}|{partition}",
                            position,
                            ttl_ms,
                            *cmd[4:],
                        )
                    )
                    plans.append(i)
                    continue
                add: WindowAdd = m  # type: ignore[assignment]  # the other kind of mutation
                key = (add.fqn, add.entity, partition)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _Group(add.window, now)
                for t, x in add.events:
                    if t > now:
                        group.future += encode_event(t, x)
                        group.fpos.append(position)
                        group.fown.append(i)
                        continue
                    b = t // group.g
                    if b < group.oldest:
                        continue
                    if type(x) is int and lo <= x <= hi:  # the common case, inlined
                        group.regular += int_event(b, 0, x >> 32, x & 0xFFFFFFFF)
                    else:
                        group.regular += encode_event(b, x)
                    group.rpos.append(position)
                    group.rown.append(i)
        except (OverflowError, struct.error) as exc:
            fqn = writes[i].mutation.fqn
            raise ValueTypeError(f"window value of {fqn}: {exc}") from None
        # Outside Cluster several groups share one script call (the script's fixed cost is
        # paid once per call); in Cluster each call's keys must hash to one slot: one group.
        per_call = 1 if isinstance(self._transport, _ClusterTransport) else _GROUPS_PER_CALL
        keys: list[str] = []
        argv: list[Any] = []
        owners: list[tuple[list[int], list[int]]] = []
        for (fqn, entity, partition), group in groups.items():
            rpos, fpos = group.rpos, group.fpos
            if not rpos and not fpos:
                continue  # every event is late: nothing to write, nothing to fence
            hkey, zkey = self.window_keys(fqn, entity, group.window)
            keys += (self.fence_key(fqn, entity), hkey, zkey)
            argv += (
                f"{source}|{partition}",
                ttl_ms,
                ",".join(rpos),
                ",".join(fpos),
                now,
                *self._window(group.window).args,
                bytes(group.regular),
                bytes(group.future),
            )
            owners.append((group.rown, group.fown))
            if len(owners) == per_call:
                cmds.append(("EVALSHA", FENCED_WINDOW_ADD.sha, len(keys), *keys, *argv))
                plans.append(owners)
                keys, argv, owners = [], [], []
        if owners:
            cmds.append(("EVALSHA", FENCED_WINDOW_ADD.sha, len(keys), *keys, *argv))
            plans.append(owners)
        replies = await self._checkpoint_call(cmds) if cmds else []
        for plan, reply in zip(plans, replies, strict=True):
            if isinstance(plan, int):
                if int(reply[0]) == 0:
                    out[plan] = False
                continue
            for k, (rown, fown) in enumerate(plan):
                skipped_regular, skipped_future = int(reply[2 * k]), int(reply[2 * k + 1])
                for i in rown[:skipped_regular]:
                    out[i] = False
                for i in fown[:skipped_future]:
                    out[i] = False
        if positions:
            flat = [x for pair in positions.items() for x in pair]
            await self._call(
                [("EVALSHA", RECORD_POSITIONS.sha, 1, self.positions_key(source), *flat)]
            )
        return out

    async def _checkpoint_call(self, cmds: list[_Cmd]) -> list[Any]:
        """Run fenced scripts: one MULTI/EXEC outside Cluster (scripts loaded first when Redis
        does not know them), one pipeline per node in Cluster."""
        if isinstance(self._transport, _ClusterTransport):
            return await self._call(cmds)
        for attempt in (1, 2):
            try:
                async with asyncio.timeout(self._timeout):
                    replies = await self._transport.execute([("MULTI",), *cmds, ("EXEC",)])
            except (RedisError, OSError, TimeoutError) as exc:
                why = str(exc) or type(exc).__name__
                raise StateUnavailable(f"{self._where} unavailable: {why}") from exc
            result = replies[-1]
            items: list[Any] = list(result) if isinstance(result, list) else [result]
            errors = [r for r in (*replies[:-1], *items) if isinstance(r, ResponseError)]
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in errors):
                await self._call(
                    [("SCRIPT", "LOAD", s.source) for s in (FENCED_WRITE, FENCED_WINDOW_ADD)]
                )
                continue  # fenced: what the first attempt applied is skipped now
            for r in errors:
                text = str(r)
                if text.startswith("RAPTOR "):
                    raise ValueTypeError(text[7:])
                raise StateUnavailable(f"{self._where} refused a command: {text}") from r
            if len(items) != len(cmds):
                raise StateUnavailable(f"{self._where}: unexpected transaction reply {result!r}")
            return items
        raise AssertionError("unreachable")

    async def positions(self, source: str) -> dict[str, str]:
        (reply,) = await self._call([("HGETALL", self.positions_key(source))])
        pairs = (
            reply.items() if isinstance(reply, dict) else zip(reply[::2], reply[1::2], strict=True)
        )
        return {
            (k.decode() if isinstance(k, bytes) else str(k)): (
                v.decode() if isinstance(v, bytes) else str(v)
            )
            for k, v in pairs
        }

    def __repr__(self) -> str:
        return f"RedisStateStore({self._where}, prefix={self._prefix!r})"


def _connect(
    t: RedisTarget, common: dict[str, Any], db: int, max_conn: int | None, timeout: float
) -> _Transport:
    pool_opts: dict[str, Any] = {"max_connections": max_conn} if max_conn else {}
    if t.kind == "cluster":
        nodes = [ClusterNode(host, port) for host, port in t.nodes]
        opts: dict[str, Any] = {"max_connections": max_conn} if max_conn else {}
        cluster = RedisCluster(startup_nodes=nodes, **opts, **common)
        return _ClusterTransport(cluster)
    if t.kind == "sentinel":
        sentinel_kwargs: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
            "username": t.sentinel_username,
            "password": t.sentinel_password,
        }
        if t.tls:
            sentinel_kwargs["ssl"] = True
            sentinel_kwargs.update(t.ssl)
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(t.nodes), sentinel_kwargs=sentinel_kwargs, **common
        )
        assert t.service is not None
        master = sentinel.master_for(t.service, db=db, **pool_opts)
        return _PoolTransport(master, closers=sentinel.sentinels)
    if t.kind == "unix":
        client = aredis.Redis(unix_socket_path=t.path, db=db, **pool_opts, **common)
    else:
        host, port = t.nodes[0]
        client = aredis.Redis(host=host, port=port, db=db, **pool_opts, **common)
    return _PoolTransport(client)


_SCRIPTS.update({s.sha: s for s in (FENCED_WRITE, FENCED_WINDOW_ADD, RECORD_POSITIONS)})
