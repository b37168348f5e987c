"""The in-memory reference :class:`~raptor.state.StateStore`.

It is the embedded default of ``raptor up`` and the reference every other backend is checked
against (the same conformance suite, :class:`raptor.testing.StateStoreConformance`). Plain dicts
and lists, no awaits inside a call (so every call is atomic for other coroutines).

Layout (few objects, cheap column reads)
    ``_current[fqn][entity]`` is the current value ``(value, timestamp, staleness)``, alive
    while ``staleness == 0 or now - timestamp <= staleness`` (SPEC 4.2). ``_older[fqn][entity]``
    is the tuple of previous versions ``(value, timestamp, expires_at)`` (version ``i`` at
    ``i - 1``; alive while ``now <= expires_at``), only for features that keep versions; "never"
    is a far-future instant and an expired version that is shifted again stays absent (it never
    comes back). One dict per feature keyed by the entity string makes a column read one C-level
    ``map(dict.get)``; the current value keeps its staleness (one int object shared by every
    write of a feature) rather than its own expiry instant, so a column read touches one object
    less per cell, which is what a batch read of random entities pays for (cache misses). Entries
    are tuples: CPython stops tracking them for the garbage collector after their first
    collection, so stored values add nothing to the pauses of a full collection.
    Windows live in one :class:`~raptor.state.memory_windows.WindowColumn` per
    ``(fqn, WindowSpec)`` (buckets, future-dated events, the memo of merged windows).

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
from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import Any

from raptor.api.windows import Partial, WindowSpec
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
from raptor.state.memory_windows import EMPTY, WindowColumn

__all__ = ["MemoryStateStore"]

_Current = tuple[Any, int, int]
"""``(value, timestamp, staleness)``: alive while ``staleness == 0 or now - timestamp <=
staleness``."""

_Entry = tuple[Any, int, int]
"""A previous version: ``(value, timestamp, expires_at)``, alive while ``now <= expires_at``."""

_ValueKey = tuple[str, str]

_NEVER = 1 << 63
"""``expires_at`` of an entry that never expires: after every representable instant."""

_GONE: _Entry = (None, 0, -(1 << 63))
"""A version slot whose value had expired when it was shifted: absent forever."""

_ABSENT: _Current = (None, -(1 << 62), 1)
"""What a column read finds for an absent entity: a current value that is dead at any time."""

_SWEEP_BUDGET = 1000
"""Most dead keys/window states deleted by one write call (the rest by the next calls)."""


def _as_version(entry: _Current) -> _Entry:
    """A current value as a version entry (its expiry instant in place of its staleness)."""
    value, ts, staleness = entry
    return (value, ts, ts + staleness if staleness else _NEVER)


def _copy(value: Any) -> Any:
    """Lists are copied in and out so callers never alias stored state (as with Redis)."""
    return list(value) if type(value) is list else value


class MemoryStateStore:
    """Process-local state. Not shared between processes; coroutine-safe (no awaits inside)."""

    def __init__(self) -> None:
        self._current: dict[str, dict[str, _Current]] = {}
        self._older: dict[str, dict[str, tuple[_Entry, ...]]] = {}
        self._windows: dict[tuple[str, WindowSpec], WindowColumn] = {}
        self._window_ids: list[WindowColumn] = []  # heap entries name columns by index
        # Deadline heaps for the sweep; a key is in the value heap at most once (_value_due).
        self._value_heap: list[tuple[int, str, str]] = []
        self._value_due: set[_ValueKey] = set()
        self._window_heap: list[tuple[int, int, str]] = []

    # -- values ---------------------------------------------------------------------------

    async def read(self, fqn: str, entity: str, versions: int, now: int) -> list[Stamped | None]:
        return self._read(fqn, entity, versions, now)

    def _read(self, fqn: str, entity: str, versions: int, now: int) -> list[Stamped | None]:
        out: list[Stamped | None] = [None] * (versions + 1)
        cells = self._current.get(fqn)
        entry = cells.get(entity) if cells is not None else None
        if entry is None:
            return out
        value, ts, staleness = entry
        if not staleness or now - ts <= staleness:
            out[0] = Stamped(_copy(value), ts)
        if versions:
            older = self._older.get(fqn)
            entries = older.get(entity, ()) if older is not None else ()
            for i, (value, ts, exp) in enumerate(entries[:versions], start=1):
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
        cells = self._current.get(fqn)
        if cells is None:
            cells = self._current[fqn] = {}
        entry = cells.get(entity)
        current = (
            entry if entry is not None and (not entry[2] or now - entry[1] <= entry[2]) else None
        )
        if current is not None and timestamp < current[1]:
            return None
        if op is WriteOp.SET:
            new_value = _copy(value)
        elif op is WriteOp.APPEND:
            new_value = [*current[0], value] if current is not None else [value]
        else:
            new_value = current[0] + value if current is not None else value
        new: _Current = (new_value, timestamp, policy.staleness)
        deadline = timestamp + policy.staleness if policy.staleness else _NEVER
        older = self._older.get(fqn)
        if policy.versions and entry is not None:
            ttl = policy.version_ttl
            if older is None:
                older = self._older[fqn] = {}
            shifted: list[_Entry] = []
            for i, (v, ts, exp) in enumerate(
                (_as_version(entry), *older.get(entity, ()))[: policy.versions], start=1
            ):
                if now > exp:
                    shifted.append(_GONE)
                else:
                    shifted.append((v, ts, now + i * ttl if ttl else _NEVER))
                    deadline = max(deadline, shifted[-1][2])
            while shifted and shifted[-1] is _GONE:
                shifted.pop()
            if shifted:
                older[entity] = tuple(shifted)
            else:
                older.pop(entity, None)
        elif older is not None:
            older.pop(entity, None)
        cells[entity] = new
        if deadline < _NEVER and (fqn, entity) not in self._value_due:
            self._value_due.add((fqn, entity))
            heapq.heappush(self._value_heap, (deadline, fqn, entity))
        if self._due(now):
            self._sweep(now)
        return Stamped(_copy(new_value), timestamp)

    def _value_deadline(self, fqn: str, entity: str) -> int | None:
        """When the current value and every version of a key have expired (None: no key)."""
        entry = self._current.get(fqn, {}).get(entity)
        if entry is None:
            return None
        older = self._older.get(fqn)
        return max(e[2] for e in (_as_version(entry), *(older.get(entity, ()) if older else ())))

    # -- windows --------------------------------------------------------------------------

    def _window_column(self, fqn: str, window: WindowSpec) -> WindowColumn:
        col = self._windows.get((fqn, window))
        if col is None:
            col = self._windows[(fqn, window)] = WindowColumn(window, len(self._window_ids))
            self._window_ids.append(col)
        return col

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
        col = self._window_column(fqn, window)
        if entity not in col.states:
            deadline = now + window.over + window.grace
            heapq.heappush(self._window_heap, (deadline, col.ident, entity))
        counted = col.add(entity, events, now)
        if self._due(now):
            self._sweep(now)
        return counted

    async def window_read(self, fqn: str, entity: str, window: WindowSpec, at: int) -> Partial:
        return self._window_read(fqn, entity, window, at)

    def _window_read(self, fqn: str, entity: str, window: WindowSpec, at: int) -> Partial:
        col = self._windows.get((fqn, window))
        return EMPTY if col is None else col.read((entity,), at)[0]

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
            _, fqn, entity = heapq.heappop(heap)
            deadline = self._value_deadline(fqn, entity)
            if deadline is None or deadline < now:
                self._current.get(fqn, {}).pop(entity, None)
                older = self._older.get(fqn)
                if older is not None:
                    older.pop(entity, None)
                self._value_due.discard((fqn, entity))
            elif deadline < _NEVER:
                heapq.heappush(heap, (deadline, fqn, entity))
            else:
                self._value_due.discard((fqn, entity))
        wheap = self._window_heap
        while wheap and wheap[0][0] <= now and budget:
            budget -= 1
            _, cid, entity = heapq.heappop(wheap)
            col = self._window_ids[cid]
            state = col.states.get(entity)
            if state is None:
                continue
            wdeadline = state.deadline(col.window)
            if wdeadline is None or wdeadline <= now:
                col.drop(entity)
            else:
                heapq.heappush(wheap, (wdeadline, cid, entity))

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
        """The :class:`~raptor.state.ColumnReader` fast path: per column a few C-level passes
        over the entities, no record per cell; the same answers as :meth:`read_batch` of every
        cell."""
        out: list[Column] = []
        for r in reads:
            if isinstance(r, ValueColumnRead):
                out.append(self._value_column(r.fqn, r.entities, r.version, now))
            else:
                col = self._windows.get((r.fqn, r.window))
                out.append([EMPTY] * len(r.entities) if col is None else col.read(r.entities, now))
        return out

    def _value_column(
        self, fqn: str, entities: Sequence[str], version: int, now: int
    ) -> ValueColumn:
        n = len(entities)
        if version:
            older = self._older.get(fqn)
            if older is None:
                return ValueColumn([None] * n, [None] * n)
            empty: tuple[_Entry, ...] = ()
            found = [
                e[version - 1] if len(e) >= version else _GONE
                for e in map(older.get, entities, repeat(empty))
            ]
        else:
            cells = self._current.get(fqn)
            if cells is None:
                return ValueColumn([None] * n, [None] * n)
            current = list(map(cells.get, entities, repeat(_ABSENT)))  # the lookups, in C
            if current:
                values, stamps, stales = zip(*current, strict=True)
                staleness = stales[0]
                if (
                    stales.count(staleness) == n
                    and (not staleness or now - min(stamps) <= staleness)
                    and list not in map(type, values)
                ):
                    return ValueColumn(list(values), list(stamps))  # every cell alive: done
            found = list(map(_as_version, current))
        out_values: list[Any] = [None] * n
        out_stamps: list[int | None] = [None] * n
        for i, (value, ts, exp) in enumerate(found):
            if now <= exp:
                out_values[i] = list(value) if type(value) is list else value
                out_stamps[i] = ts
        return ValueColumn(out_values, out_stamps)

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
