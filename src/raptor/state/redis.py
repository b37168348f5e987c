"""The Redis :class:`~raptor.state.StateStore`: production state, shared by stateless replicas.

With :mod:`raptor.state.redis_transport` (how commands reach Redis, the only module that builds
redis-py clients), the one adapter of Raptor's state that imports ``redis``; here only its
exceptions, translated at this boundary. It behaves exactly like
:class:`~raptor.state.memory.MemoryStateStore` (same conformance suite); ``docs/state-redis.md``
documents the key layout with examples.

Design:

* **Keys** contain the feature FQN and a hash tag scoped to ``(feature, entity)``:
  ``raptor:{<fqn>|<entity>}:v`` (values), ``…:w:<g>:<over>`` (window buckets) and
  ``…:wf:<g>:<over>`` (future-dated events). Every script touches only keys of one
  ``(feature, entity)``, so one hash slot: Cluster-safe, and a Cluster spreads each feature.
* **Atomicity**: each write and each window add is one Lua script (EVALSHA; on NOSCRIPT, after
  a restart or a SCRIPT FLUSH, the scripts are loaded and the calls re-sent). The scripts are in
  :mod:`raptor.state.redis_scripts` and :mod:`raptor.state.redis_window_scripts`, the byte
  formats shared with Lua in :mod:`raptor.state.redis_codec`. Ints stay exact (split into
  32-bit halves in Lua).
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
from typing import Any

from redis import RedisError, ResponseError
from redis.exceptions import NoScriptError

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
from raptor.state.redis_codec import (
    EventGroup,
    Pending,
    decode_partial,
    decode_values,
    decode_write,
    encode_event,
    encode_events,
    encode_value,
    pack_int_event,
    split_events,
)
from raptor.state.redis_scripts import FENCED_WRITE, RECORD_POSITIONS, WRITE
from raptor.state.redis_transport import ClusterTransport, Command, Transport, connect
from raptor.state.redis_window_scripts import FENCED_WINDOW_ADD, READ_WINDOW, WINDOW_ADD
from raptor.state.urls import parse_redis_url

__all__ = ["DEFAULT_TIMEOUT", "RedisStateStore"]

DEFAULT_TIMEOUT = 2.0
"""Seconds a state call may take before it fails with StateUnavailable (SPEC 8.1)."""

_OPS = {WriteOp.SET: b"s", WriteOp.APPEND: b"a", WriteOp.INCR: b"i"}
_SCRIPTS = {
    s.sha: s
    for s in (WRITE, WINDOW_ADD, READ_WINDOW, FENCED_WRITE, FENCED_WINDOW_ADD, RECORD_POSITIONS)
}
_MGET_CHUNK = 1000
_GROUPS_PER_CALL = 64
"""Window groups (feature, entity, partition) per fenced script call outside Cluster."""


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


class RedisStateStore:
    """State in Redis (standalone, Sentinel or Cluster). Build it with :meth:`from_url`."""

    def __init__(
        self,
        transport: Transport,
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
        transport = connect(
            t,
            username=username if username is not None else t.username,
            password=password if password is not None else t.password,
            db=db if db is not None else t.db,
            max_conn=max_connections or t.max_connections,
            timeout=timeout,
        )
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

    def _write_cmd(
        self,
        fqn: str,
        entity: str,
        op: WriteOp,
        value: Any,
        timestamp: int,
        policy: WritePolicy,
        now: int,
    ) -> Command:
        return (
            "EVALSHA",
            WRITE.sha,
            1,
            self.value_key(fqn, entity),
            _OPS[op],
            encode_value(value),
            timestamp,
            now,
            policy.staleness,
            policy.versions,
            policy.version_ttl,
            self._floor_ms,
        )

    def _add_cmd(
        self, fqn: str, entity: str, window: WindowSpec, pending: Pending, now: int
    ) -> Command:
        """The script call that adds the split events of one (feature, entity, window)."""
        try:
            ev, fu = encode_events(pending[0]), encode_events(pending[1])
        except (OverflowError, struct.error) as exc:
            raise ValueTypeError(f"window value of {fqn}: {exc}") from None
        hkey, zkey = self.window_keys(fqn, entity, window)
        w = self._window(window)
        return ("EVALSHA", WINDOW_ADD.sha, 2, hkey, zkey, now, *w.args, ev, fu)

    def _window_read_cmd(self, fqn: str, entity: str, window: WindowSpec, at: int) -> Command:
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

    async def _call(self, cmds: list[Command]) -> list[Any]:
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
        return decode_values(reply, versions, now)

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
        return decode_write(reply, op, value, timestamp)

    async def window_add(
        self,
        fqn: str,
        entity: str,
        window: WindowSpec,
        events: Sequence[tuple[int, Any]],
        now: int,
    ) -> int:
        pending: Pending = ([], [])
        counted = split_events(window, events, now, pending)
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
        cmds: list[Command] = [
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
            decode_values(next(values), r.versions, now)
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
        cmds: list[Command] = []
        counts: list[int] = []
        groups: dict[tuple[str, str, WindowSpec], Pending] = {}
        for m in mutations:
            if isinstance(m, ValueWrite):
                cmds.append(
                    self._write_cmd(m.fqn, m.entity, m.op, m.value, m.timestamp, m.policy, now)
                )
                counts.append(-1)
            else:
                pending = groups.setdefault((m.fqn, m.entity, m.window), ([], []))
                counts.append(split_events(m.window, m.events, now, pending))
        for (fqn, entity, window), pending in groups.items():
            if pending[0] or pending[1]:
                cmds.append(self._add_cmd(fqn, entity, window, pending, now))
        replies = iter(await self._call(cmds) if cmds else ())
        out: list[Stamped | int | None] = []
        for m, counted in zip(mutations, counts, strict=True):
            if isinstance(m, ValueWrite):
                out.append(decode_write(next(replies), m.op, m.value, m.timestamp))
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
        cmds: list[Command] = []
        # per command: the index of a value write, or the (regular, future) write indexes of
        # each of its window groups
        plans: list[int | list[tuple[list[int], list[int]]]] = []
        # A feature has one window, so (fqn, entity, partition) names a group (no WindowSpec
        # hashing per write). Events are packed into level-0 buckets / future events as they
        # come (late ones are dropped, as SPEC 4.3 says).
        groups: dict[tuple[str, str, str], EventGroup] = {}
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
                    group = groups[key] = EventGroup(add.window, now)
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
        per_call = 1 if isinstance(self._transport, ClusterTransport) else _GROUPS_PER_CALL
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

    async def _checkpoint_call(self, cmds: list[Command]) -> list[Any]:
        """Run fenced scripts: one MULTI/EXEC outside Cluster (scripts loaded first when Redis
        does not know them), one pipeline per node in Cluster."""
        if isinstance(self._transport, ClusterTransport):
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
