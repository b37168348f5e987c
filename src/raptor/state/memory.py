"""The in-memory reference :class:`~raptor.state.StateStore`.

It is the embedded default of ``raptor up`` and the reference every other backend is checked
against (same conformance suite). It is written for clarity first and speed second: plain dicts,
mutable bucket lists, expiry checked lazily on read and pruned on write.

Layout: ``values[(fqn, entity)]`` is a list of ``(value, timestamp, expires_at)`` entries, index 0
the current value, ``i`` the previous version ``i`` (``expires_at`` 0 = never).
``windows[(fqn, entity)]`` keeps one dict per level of bucket index → ``[sum, count, min, max]``
plus a heap of future-dated events that are folded in once a read reaches their time.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from typing import Any

from raptor.api.windows import FANOUT, Partial, WindowSpec
from raptor.state import (
    Stamped,
    ValueRead,
    ValueWrite,
    WindowAdd,
    WindowRead,
    WriteOp,
    WritePolicy,
)

__all__ = ["MemoryStateStore"]

_Entry = tuple[Any, int, int]


class _Window:
    __slots__ = ("levels", "next_prune", "pending", "seq")

    def __init__(self, levels: int) -> None:
        self.levels: list[dict[int, list[Any]]] = [{} for _ in range(levels)]
        self.pending: list[tuple[int, int, Any]] = []
        self.seq = 0
        self.next_prune = 0


class MemoryStateStore:
    """Process-local state. Not shared between processes; coroutine-safe (no awaits inside)."""

    def __init__(self) -> None:
        self._values: dict[tuple[str, str], list[_Entry]] = {}
        self._windows: dict[tuple[str, str, WindowSpec], _Window] = {}

    # -- values ---------------------------------------------------------------------------

    async def read(self, fqn: str, entity: str, versions: int, now: int) -> list[Stamped | None]:
        return self._read(fqn, entity, versions, now)

    def _read(self, fqn: str, entity: str, versions: int, now: int) -> list[Stamped | None]:
        entries = self._values.get((fqn, entity))
        if entries is None:
            return [None] * (versions + 1)
        out: list[Stamped | None] = []
        for i in range(versions + 1):
            if i < len(entries):
                value, ts, exp = entries[i]
                out.append(Stamped(value, ts) if exp == 0 or exp > now else None)
            else:
                out.append(None)
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
        current: _Entry | None = entries[0] if entries else None
        if current is not None and timestamp < current[1]:
            return None
        live = current is not None and (current[2] == 0 or current[2] > now)
        if op is WriteOp.SET:
            new_value = value
        elif op is WriteOp.APPEND:
            new_value = [*current[0], value] if live and current is not None else [value]
        else:
            new_value = current[0] + value if live and current is not None else value
        expires = timestamp + policy.staleness if policy.staleness else 0
        new: _Entry = (new_value, timestamp, expires)
        if policy.versions and entries:
            ttl = policy.version_ttl
            shifted = [new]
            for i, (v, ts, _) in enumerate(entries[: policy.versions], start=1):
                shifted.append((v, ts, now + i * ttl if ttl else 0))
            self._values[key] = shifted
        else:
            self._values[key] = [new]
        return Stamped(new_value, timestamp)

    # -- windows --------------------------------------------------------------------------

    def _window(self, fqn: str, entity: str, window: WindowSpec) -> _Window:
        key = (fqn, entity, window)
        state = self._windows.get(key)
        if state is None:
            state = self._windows[key] = _Window(window.levels)
        return state

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
        state = self._window(fqn, entity, window)
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
        return counted

    @staticmethod
    def _prune(state: _Window, window: WindowSpec, now: int) -> None:
        """Drop buckets past their expiry (window + grace); run about once per granularity."""
        state.next_prune = now + window.granularity
        for level, buckets in enumerate(state.levels):
            dead = [i for i in buckets if window.bucket_expiry((level, i)) <= now]
            for i in dead:
                del buckets[i]

    def _fold_pending(self, state: _Window, window: WindowSpec, at: int) -> None:
        pending = state.pending
        due: list[tuple[int, Any]] = []
        while pending and pending[0][0] <= at:
            t, _, x = heapq.heappop(pending)
            due.append((t, x))
        if not due:
            return
        g = window.granularity
        oldest = at // g - window.buckets + 1
        for t, x in due:
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

    async def apply(
        self, mutations: Sequence[ValueWrite | WindowAdd], now: int
    ) -> list[Stamped | None | int]:
        out: list[Stamped | None | int] = []
        for m in mutations:
            if isinstance(m, ValueWrite):
                out.append(
                    self._write(m.fqn, m.entity, m.op, m.value, m.timestamp, m.policy, now)
                )
            else:
                out.append(self._window_add(m.fqn, m.entity, m.window, m.events, now))
        return out

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None
