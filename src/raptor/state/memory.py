"""The in-memory reference :class:`~raptor.state.StateStore`.

It is the embedded default of ``raptor up`` and the reference every other backend is checked
against (the same conformance suite, :class:`raptor.testing.StateStoreConformance`). Plain dicts
and lists, no awaits inside a call (so every call is atomic for other coroutines).

Layout
    ``values[(fqn, entity)]`` is a list of ``(value, timestamp, expires_at)`` entries: index 0 the
    current value, ``i`` previous version ``i``. An entry is alive while ``now <= expires_at``
    (SPEC 4.2: usable while ``now - ts <= staleness``), so "never" is a far-future instant and an
    expired version that is shifted again stays absent (it never comes back).
    ``windows[(fqn, entity, spec)]`` keeps one dict per level of bucket index →
    ``[sum, count, min, max]``, plus a heap of future-dated events folded in once a read
    reaches their time.

Expiry (memory is bounded by what is alive, not by what was ever written)
    * An entry expired at ``now`` is absent for every purpose: it does not block an older
      write, ``INCR``/``APPEND`` start from empty, and it shifts as an absent version.
    * A window state drops its dead buckets about once per granularity, in time order, so a
      prune costs the buckets that died since the last one (not the whole window).
    * Keys and window states that are wholly dead are deleted by an incremental sweep driven by
      two heaps of deadlines, a bounded number per write call, so an entity that is never
      written again still releases its memory. Reads never delete (they may run at any ``at``).

Time is assumed to move forward across calls (``now``/``at`` of a call is not earlier than the
``now`` of earlier writes), as for any TTL-based backend; the conformance suite holds to it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from itertools import count, repeat
from typing import Any

from raptor.api.windows import FANOUT, Partial, WindowSpec
from raptor.state import (
    CHECKPOINT_TTL,
    Column,
    ColumnRead,
    Positioned,
    Stamped,
    ValueColumn,
    ValueColumnRead,
    ValueRead,
    ValueWrite,
    WindowAdd,
    WindowRead,
    WriteOp,
    WritePolicy,
)

__all__ = ["MemoryStateStore"]

_Entry = tuple[Any, int, int]
_ValueKey = tuple[str, str]
_WindowKey = tuple[str, str, WindowSpec]

_NEVER = 1 << 63
"""``expires_at`` of an entry that never expires: after every representable instant."""

_GONE: _Entry = (None, 0, -(1 << 63))
"""A version slot whose value had expired when it was shifted: absent forever."""

_SWEEP_BUDGET = 1000
"""Most dead keys/window states deleted by one write call (the rest by the next calls)."""


def _copy(value: Any) -> Any:
    """Lists are copied in and out so callers never alias stored state (as with Redis)."""
    return list(value) if type(value) is list else value


class _Window:
    __slots__ = ("floors", "levels", "next_prune", "pending", "seq")

    def __init__(self, levels: int) -> None:
        self.levels: list[dict[int, list[Any]]] = [{} for _ in range(levels)]
        self.pending: list[tuple[int, int, Any]] = []
        self.seq = 0
        self.next_prune = 0
        # Per level: every index below it was pruned (None until the first full prune).
        self.floors: list[int | None] = [None] * levels


class MemoryStateStore:
    """Process-local state. Not shared between processes; coroutine-safe (no awaits inside)."""

    def __init__(self) -> None:
        self._values: dict[_ValueKey, list[_Entry]] = {}
        self._windows: dict[_WindowKey, _Window] = {}
        # Deadline heaps for the sweep; a key is in its heap at most once (the *_due sets).
        self._value_heap: list[tuple[int, _ValueKey]] = []
        self._value_due: set[_ValueKey] = set()
        self._window_heap: list[tuple[int, int, _WindowKey]] = []
        self._tiebreak = count()

    # -- values ---------------------------------------------------------------------------

    async def read(self, fqn: str, entity: str, versions: int, now: int) -> list[Stamped | None]:
        return self._read(fqn, entity, versions, now)

    def _read(self, fqn: str, entity: str, versions: int, now: int) -> list[Stamped | None]:
        out: list[Stamped | None] = [None] * (versions + 1)
        entries = self._values.get((fqn, entity))
        if entries is not None:
            for i, (value, ts, exp) in enumerate(entries[: versions + 1]):
                if now <= exp:
                    out[i] = Stamped(_copy(value), ts)
        return out

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
        return self._write(fqn, entity, op, value, timestamp, policy, now)

    def _write(
        self,
        fqn: str,
        entity: str,
        op: WriteOp,
        value: Any,
        timestamp: int,
        policy: WritePolicy,
        now: int,
    ) -> Stamped | None:
        key = (fqn, entity)
        entries = self._values.get(key)
        current = entries[0] if entries and now <= entries[0][2] else None
        if current is not None and timestamp < current[1]:
            return None
        if op is WriteOp.SET:
            new_value = _copy(value)
        elif op is WriteOp.APPEND:
            new_value = [*current[0], value] if current is not None else [value]
        else:
            new_value = current[0] + value if current is not None else value
        new: _Entry = (
            new_value,
            timestamp,
            timestamp + policy.staleness if policy.staleness else _NEVER,
        )
        if policy.versions and entries:
            ttl = policy.version_ttl
            shifted = [new]
            for i, (v, ts, exp) in enumerate(entries[: policy.versions], start=1):
                if now > exp:
                    shifted.append(_GONE)
                else:
                    shifted.append((v, ts, now + i * ttl if ttl else _NEVER))
            while shifted[-1] is _GONE:
                shifted.pop()
            entries = shifted
        else:
            entries = [new]
        self._values[key] = entries
        if key not in self._value_due:
            deadline = max(e[2] for e in entries)
            if deadline < _NEVER:
                self._value_due.add(key)
                heapq.heappush(self._value_heap, (deadline, key))
        if self._due(now):
            self._sweep(now)
        return Stamped(_copy(new_value), timestamp)

    # -- windows --------------------------------------------------------------------------

    async def window_add(
        self,
        fqn: str,
        entity: str,
        window: WindowSpec,
        events: Sequence[tuple[int, Any]],
        now: int,
    ) -> int:
        return self._window_add(fqn, entity, window, events, now)

    def _window_add(
        self,
        fqn: str,
        entity: str,
        window: WindowSpec,
        events: Sequence[tuple[int, Any]],
        now: int,
    ) -> int:
        key = (fqn, entity, window)
        state = self._windows.get(key)
        if state is None:
            state = self._windows[key] = _Window(window.levels)
            deadline = now + window.over + window.grace
            heapq.heappush(self._window_heap, (deadline, next(self._tiebreak), key))
        g = window.granularity
        oldest = now // g - window.buckets + 1
        levels = state.levels
        counted = 0
        for t, x in events:
            if t > now:
                state.seq += 1
                heapq.heappush(state.pending, (t, state.seq, x))
                counted += 1
                continue
            b = t // g
            if b < oldest:
                continue
            counted += 1
            for buckets in levels:
                p = buckets.get(b)
                if p is None:
                    buckets[b] = [x, 1, x, x]
                else:
                    p[0] += x
                    p[1] += 1
                    if x < p[2]:
                        p[2] = x
                    if x > p[3]:
                        p[3] = x
                b //= FANOUT
        if now >= state.next_prune:
            self._prune(state, window, now)
        if self._due(now):
            self._sweep(now)
        return counted

    @staticmethod
    def _prune(state: _Window, window: WindowSpec, now: int) -> None:
        """Drop the buckets past :meth:`WindowSpec.bucket_expiry`; run about once per granularity.

        Buckets die in index order, so each level remembers below which index everything is gone
        and only visits the indexes that died since (or scans its dict when that is smaller)."""
        state.next_prune = now + window.granularity
        reach = now - window.over - window.grace
        span = window.granularity
        for level, buckets in enumerate(state.levels):
            limit = reach // span  # bucket (level, i) is dead when i < limit
            floor = state.floors[level]
            if floor is None or limit - floor > len(buckets):
                dead = [i for i in buckets if i < limit]
            else:
                dead = [i for i in range(floor, limit) if i in buckets]
            for i in dead:
                del buckets[i]
            if floor is None or limit > floor:
                state.floors[level] = limit
            span *= FANOUT

    @staticmethod
    def _fold_pending(state: _Window, window: WindowSpec, at: int) -> None:
        pending = state.pending
        g = window.granularity
        oldest = at // g - window.buckets + 1
        while pending and pending[0][0] <= at:
            t, _, x = heapq.heappop(pending)
            b = t // g
            if b < oldest:
                continue
            for buckets in state.levels:
                p = buckets.get(b)
                if p is None:
                    buckets[b] = [x, 1, x, x]
                else:
                    p[0] += x
                    p[1] += 1
                    if x < p[2]:
                        p[2] = x
                    if x > p[3]:
                        p[3] = x
                b //= FANOUT

    async def window_read(self, fqn: str, entity: str, window: WindowSpec, at: int) -> Partial:
        return self._window_read(fqn, entity, window, at)

    def _window_read(self, fqn: str, entity: str, window: WindowSpec, at: int) -> Partial:
        state = self._windows.get((fqn, entity, window))
        if state is None:
            return (0, 0, None, None)
        if state.pending and state.pending[0][0] <= at:
            self._fold_pending(state, window, at)
        levels = state.levels
        s: Any = 0
        c = 0
        mn: Any = None
        mx: Any = None
        for level, index in window.cover(at):
            p = levels[level].get(index)
            if p is None:
                continue
            if c == 0:
                s, mn, mx = p[0], p[2], p[3]
            else:
                s = s + p[0]
                if p[2] < mn:
                    mn = p[2]
                if p[3] > mx:
                    mx = p[3]
            c += p[1]
        return (s, c, mn, mx)

    # -- expiry ---------------------------------------------------------------------------

    def _due(self, now: int) -> bool:
        """Whether a sweep has work at ``now`` (cheap: looks at the two heap tops)."""
        vh, wh = self._value_heap, self._window_heap
        return bool(vh and vh[0][0] < now) or bool(wh and wh[0][0] <= now)

    def _sweep(self, now: int) -> None:
        """Delete up to ``_SWEEP_BUDGET`` keys and window states that are wholly dead at ``now``.

        Heap deadlines may be early (never late): a popped key that is still alive is pushed
        back with its real deadline."""
        heap = self._value_heap
        budget = _SWEEP_BUDGET
        while heap and heap[0][0] < now and budget:
            budget -= 1
            _, key = heapq.heappop(heap)
            entries = self._values.get(key)
            deadline = max(e[2] for e in entries) if entries else -_NEVER
            if deadline < now:
                self._values.pop(key, None)
                self._value_due.discard(key)
            elif deadline < _NEVER:
                heapq.heappush(heap, (deadline, key))
            else:
                self._value_due.discard(key)
        wheap = self._window_heap
        while wheap and wheap[0][0] <= now and budget:
            budget -= 1
            _, tie, wkey = heapq.heappop(wheap)
            state = self._windows.get(wkey)
            if state is None:
                continue
            wdeadline = self._window_deadline(state, wkey[2])
            if wdeadline <= now:
                del self._windows[wkey]
            else:
                heapq.heappush(wheap, (wdeadline, tie, wkey))

    @staticmethod
    def _window_deadline(state: _Window, window: WindowSpec) -> int:
        """When every bucket of the state (pending events included) has expired."""
        top = len(state.levels) - 1
        last: int | None = max(state.levels[top], default=None)
        if state.pending:
            pending_last = max(t for t, _, _ in state.pending) // window.granularity
            pending_last //= FANOUT**top
            last = pending_last if last is None else max(last, pending_last)
        if last is None:
            return -_NEVER
        return window.bucket_expiry((top, last))

    # -- batches --------------------------------------------------------------------------

    async def read_batch(
        self, reads: Sequence[ValueRead | WindowRead], now: int
    ) -> list[list[Stamped | None] | Partial]:
        out: list[list[Stamped | None] | Partial] = []
        for r in reads:
            if isinstance(r, ValueRead):
                out.append(self._read(r.fqn, r.entity, r.versions, now))
            else:
                out.append(self._window_read(r.fqn, r.entity, r.window, now))
        return out

    async def read_columns(self, reads: Sequence[ColumnRead], now: int) -> list[Column]:
        """The :class:`~raptor.state.ColumnReader` fast path: per column one tight loop over the
        entities, no record per cell; the same answers as :meth:`read_batch` of every cell."""
        out: list[Column] = []
        for r in reads:
            if isinstance(r, ValueColumnRead):
                out.append(self._value_column(r.fqn, r.entities, r.version, now))
            else:
                out.append(self._window_column(r.fqn, r.entities, r.window, now))
        return out

    def _value_column(
        self, fqn: str, entities: Sequence[str], version: int, now: int
    ) -> ValueColumn:
        values: list[Any] = [None] * len(entities)
        stamps: list[int | None] = [None] * len(entities)
        found = map(self._values.get, zip(repeat(fqn), entities))  # the lookups, in C
        for i, entries in enumerate(found):
            if entries is not None and len(entries) > version:
                value, ts, exp = entries[version]
                if now <= exp:
                    values[i] = list(value) if type(value) is list else value
                    stamps[i] = ts
        return ValueColumn(values, stamps)

    def _window_column(
        self, fqn: str, entities: Sequence[str], window: WindowSpec, at: int
    ) -> list[Partial]:
        # The cover (computed once) grouped by level, in cover order, so buckets are merged in
        # the very order of _window_read (the same float sums, to the last bit). Per level,
        # a state with fewer buckets than the cover has there is scanned instead of probed.
        groups: list[tuple[int, list[int], dict[int, int]]] = []
        for level, index in window.cover(at):
            if not groups or groups[-1][0] != level:
                groups.append((level, [], {}))
            _, indexes, where = groups[-1]
            where[index] = len(indexes)
            indexes.append(index)
        get = self._windows.get
        out: list[Partial] = []
        for e in entities:
            state = get((fqn, e, window))
            if state is None:
                out.append((0, 0, None, None))
                continue
            if state.pending and state.pending[0][0] <= at:
                self._fold_pending(state, window, at)
            levels = state.levels
            s: Any = 0
            c = 0
            mn: Any = None
            mx: Any = None
            for level, indexes, where in groups:
                buckets = levels[level]
                parts: Iterable[list[Any] | None]
                if len(buckets) < len(indexes):
                    if not buckets:
                        continue
                    found: list[int] | None = None
                    for i in buckets:
                        if i in where:
                            if found is None:
                                found = [where[i]]
                            else:
                                found.append(where[i])
                    if found is None:
                        continue
                    found.sort()
                    parts = map(buckets.get, map(indexes.__getitem__, found))
                else:
                    parts = map(buckets.get, indexes)
                for p in parts:
                    if p is None:
                        continue
                    if c == 0:
                        s, mn, mx = p[0], p[2], p[3]
                    else:
                        s = s + p[0]
                        if p[2] < mn:
                            mn = p[2]
                        if p[3] > mx:
                            mx = p[3]
                    c += p[1]
            out.append((s, c, mn, mx))
        return out

    async def apply(
        self, mutations: Sequence[ValueWrite | WindowAdd], now: int
    ) -> list[Stamped | int | None]:
        out: list[Stamped | int | None] = []
        for m in mutations:
            if isinstance(m, ValueWrite):
                out.append(self._write(m.fqn, m.entity, m.op, m.value, m.timestamp, m.policy, now))
            else:
                out.append(self._window_add(m.fqn, m.entity, m.window, m.events, now))
        return out

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # -- checkpoints (raptor.state.CheckpointStore) ----------------------------------------
    #
    # Fences live in ``_fences[(fqn, entity)][(source, partition)]``; a heap of
    # ``(expires_at, key)`` drops the fences of an entity not written for ``checkpoint_ttl``
    # (bounded work per call, as the value sweep). The whole call runs without an await, so it
    # is atomic for other coroutines.

    checkpoint_ttl: float = CHECKPOINT_TTL
    _ckpt: _Checkpoints | None = None

    def _checkpoints(self) -> _Checkpoints:
        c = self._ckpt
        if c is None:
            c = self._ckpt = _Checkpoints()
        return c

    async def apply_checkpointed(
        self,
        writes: Sequence[Positioned],
        now: int,
        source: str,
        positions: Mapping[str, str],
    ) -> list[bool]:
        c = self._checkpoints()
        fences = c.fences
        ttl = int(self.checkpoint_ttl * 1_000_000)
        out: list[bool] = []
        for w in writes:
            m = w.mutation
            key = (m.fqn, m.entity)
            fence = fences.get(key)
            name = (source, w.partition)
            pos = w.position
            if fence is None:
                fence = fences[key] = {}
            else:
                seen = fence.get(name)
                if seen is not None and (len(pos), pos) <= (len(seen), seen):
                    out.append(False)
                    continue
            if isinstance(m, ValueWrite):
                self._write(m.fqn, m.entity, m.op, m.value, m.timestamp, m.policy, now)
            else:
                self._window_add(m.fqn, m.entity, m.window, m.events, now)
            fence[name] = pos
            if key not in c.expires:
                heapq.heappush(c.heap, (now + ttl, key))
            c.expires[key] = now + ttl
            out.append(True)
        recorded = c.positions.setdefault(source, {})
        for partition, pos in positions.items():
            seen = recorded.get(partition)
            if seen is None or (len(pos), pos) > (len(seen), seen):
                recorded[partition] = pos
        budget = _SWEEP_BUDGET
        heap = c.heap
        while heap and heap[0][0] < now and budget:
            budget -= 1
            _, key = heapq.heappop(heap)
            expires = c.expires.get(key)
            if expires is None:
                continue
            if expires < now:
                del c.expires[key]
                fences.pop(key, None)
            else:
                heapq.heappush(heap, (expires, key))
        return out

    async def positions(self, source: str) -> dict[str, str]:
        return dict(self._checkpoints().positions.get(source, {}))


class _Checkpoints:
    """Fences and recorded positions of :meth:`MemoryStateStore.apply_checkpointed`."""

    __slots__ = ("expires", "fences", "heap", "positions")

    def __init__(self) -> None:
        self.fences: dict[_ValueKey, dict[tuple[str, str], str]] = {}
        self.expires: dict[_ValueKey, int] = {}
        self.heap: list[tuple[int, _ValueKey]] = []
        self.positions: dict[str, dict[str, str]] = {}
