"""State: where feature values and window buckets live, behind one small Protocol.

The engine decides *what* to store (type checks, freshness, which window); a :class:`StateStore`
only stores and returns it. Every backend passes the same conformance suite
(:class:`raptor.testing.StateStoreConformance`): the in-memory reference
(:class:`raptor.state.memory.MemoryStateStore`) and Redis run the very same tests.

Contract, for every backend:

* Identity is ``(fqn, entity)``: the feature's FQN and its encoded entity
  (:func:`raptor.api.names.encode_entity`). Two features never share state.
* Time is integer microseconds since the epoch (:data:`raptor.api.timeutil.Micros`). Every call
  that can expire or compare takes ``now`` explicitly; backends never read a clock of their own
  (Redis uses its own TTLs, set from the values passed in).
* **Values** (:meth:`StateStore.write`): ``SET`` replaces, ``APPEND`` adds one element to a list
  (a missing list is empty), ``INCR`` adds to a number (a missing number is 0). A write whose
  timestamp is older than the current value's is ignored and ``write`` returns ``None``: the
  latest event time wins, versions do not shift. With ``policy.versions = N`` the replaced value
  moves to version 1 (keeping its own timestamp), version 1 to 2... up to N. The current value
  expires ``policy.staleness`` after its timestamp (0 = never); version ``i`` expires
  ``i * policy.version_ttl`` after the write that shifted it (``now`` of that write).
* **Windows** (:meth:`StateStore.window_add`, :meth:`StateStore.window_read`) implement
  :mod:`raptor.api.windows` exactly: an event is late (dropped, returns not-counted) when its
  bucket is out of the window at ``now``; an event with ``t > now`` is kept aside and only
  counted by reads at ``at >= t``; reads merge the window's cover in one call.
* Failures to reach the backend raise :class:`raptor.errors.StateUnavailable`; a write that
  raised may or may not have been applied, but a write that returned was applied.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

from raptor.api.windows import Partial, WindowSpec

__all__ = [
    "Stamped",
    "StateStore",
    "ValueRead",
    "ValueWrite",
    "WindowAdd",
    "WindowRead",
    "WriteOp",
    "WritePolicy",
]


class Stamped(NamedTuple):
    """A stored value and its timestamp (epoch microseconds).

    Named tuples, not frozen dataclasses, for the records built per cell on hot paths: just as
    immutable, four times cheaper to build."""

    value: Any
    timestamp: int


class WriteOp(enum.Enum):
    SET = "set"
    APPEND = "append"
    INCR = "incr"


@dataclass(frozen=True, slots=True)
class WritePolicy:
    """How a value is kept: TTL of the current value, and previous versions."""

    staleness: int = 0
    versions: int = 0
    version_ttl: int = 0


NO_POLICY = WritePolicy()


class ValueRead(NamedTuple):
    fqn: str
    entity: str
    versions: int = 0


class WindowRead(NamedTuple):
    fqn: str
    entity: str
    window: WindowSpec


@dataclass(frozen=True, slots=True)
class ValueWrite:
    fqn: str
    entity: str
    op: WriteOp
    value: Any
    timestamp: int
    policy: WritePolicy = NO_POLICY


@dataclass(frozen=True, slots=True)
class WindowAdd:
    fqn: str
    entity: str
    window: WindowSpec
    events: Sequence[tuple[int, Any]]


@runtime_checkable
class StateStore(Protocol):
    """What the engine needs from a state backend. All methods are coroutines."""

    async def read(self, fqn: str, entity: str, versions: int, now: int) -> list[Stamped | None]:
        """The current value (index 0) and ``versions`` previous ones; ``None`` where absent or
        expired at ``now``. The list always has ``versions + 1`` items."""
        ...

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
        """Apply one write atomically; the new current value, or ``None`` if it was older than
        the stored one and so ignored."""
        ...

    async def window_add(
        self,
        fqn: str,
        entity: str,
        window: WindowSpec,
        events: Sequence[tuple[int, Any]],
        now: int,
    ) -> int:
        """Add ``(event_time, value)`` pairs atomically; return how many were not late."""
        ...

    async def window_read(self, fqn: str, entity: str, window: WindowSpec, at: int) -> Partial:
        """The merged partial of the window read at ``at``."""
        ...

    async def read_batch(
        self, reads: Sequence[ValueRead | WindowRead], now: int
    ) -> list[list[Stamped | None] | Partial]:
        """Many reads at once (one round trip per node for remote backends), in order."""
        ...

    async def apply(
        self, mutations: Sequence[ValueWrite | WindowAdd], now: int
    ) -> list[Stamped | int | None]:
        """Many writes at once, all-or-nothing where the backend allows; results in order
        (as :meth:`write` / :meth:`window_add` would return them)."""
        ...

    async def ping(self) -> None:
        """Raise :class:`raptor.errors.StateUnavailable` unless the backend answers."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...


# -- column reads: an optional fast path ----------------------------------------------------
#
# A batch read of many entities x a few features is, per feature, one *column*. A backend may
# implement :meth:`ColumnReader.read_columns` to read a column in one tight loop (no record per
# cell); :func:`read_columns` uses it when present and otherwise reshapes one ``read_batch``
# call (:func:`read_columns_via_batch`), so a backend without it (Redis) works unchanged. The
# results are exactly what ``read_batch`` of the same cells returns, reshaped.


class ValueColumnRead(NamedTuple):
    """Version ``version`` (0 = the current value) of feature ``fqn`` for every entity."""

    fqn: str
    entities: Sequence[str]
    version: int = 0


class WindowColumnRead(NamedTuple):
    """The merged window partial of feature ``fqn`` for every entity."""

    fqn: str
    entities: Sequence[str]
    window: WindowSpec


class ValueColumn(NamedTuple):
    """One value column: ``values[i]``/``timestamps[i]`` belong to ``entities[i]``. An absent or
    expired cell has timestamp ``None`` (and value ``None``)."""

    values: list[Any]
    timestamps: list[int | None]


ColumnRead = ValueColumnRead | WindowColumnRead
Column = ValueColumn | list[Partial]
"""A :class:`ValueColumn` for a :class:`ValueColumnRead`, a list of partials (one per entity)
for a :class:`WindowColumnRead`."""


@runtime_checkable
class ColumnReader(Protocol):
    """The optional fast path of a :class:`StateStore` (see :func:`read_columns`)."""

    async def read_columns(self, reads: Sequence[ColumnRead], now: int) -> list[Column]:
        """One column per read, in order; the same answers as ``read_batch`` of every cell."""
        ...


async def read_columns(store: StateStore, reads: Sequence[ColumnRead], now: int) -> list[Column]:
    """Read columns with the store's own fast path when it has one, else through ``read_batch``
    (:func:`read_columns_via_batch`)."""
    fast = getattr(store, "read_columns", None)  # not isinstance(): a protocol check costs µs
    if fast is None:
        return await read_columns_via_batch(store, reads, now)
    columns: list[Column] = await fast(reads, now)
    return columns


async def read_columns_via_batch(
    store: StateStore, reads: Sequence[ColumnRead], now: int
) -> list[Column]:
    """The generic column read: every cell in one ``read_batch`` call, reshaped."""
    cells: list[ValueRead | WindowRead] = []
    for r in reads:
        if isinstance(r, ValueColumnRead):
            cells.extend(ValueRead(r.fqn, e, r.version) for e in r.entities)
        else:
            cells.extend(WindowRead(r.fqn, e, r.window) for e in r.entities)
    got = await store.read_batch(cells, now) if cells else []
    out: list[Column] = []
    start = 0
    for r in reads:
        chunk = got[start : start + len(r.entities)]
        start += len(r.entities)
        if isinstance(r, ValueColumnRead):
            values: list[Any] = []
            stamps: list[int | None] = []
            for versions in chunk:
                assert isinstance(versions, list)
                item = versions[r.version]
                values.append(None if item is None else item.value)
                stamps.append(None if item is None else item.timestamp)
            out.append(ValueColumn(values, stamps))
        else:
            partials: list[Partial] = []
            for p in chunk:
                assert isinstance(p, tuple)
                partials.append(p)
            out.append(partials)
    return out


__all__ += [
    "Column",
    "ColumnRead",
    "ColumnReader",
    "ValueColumn",
    "ValueColumnRead",
    "WindowColumnRead",
    "read_columns",
    "read_columns_via_batch",
]


from collections.abc import Mapping  # noqa: E402  (checkpoint extension below)

# -- checkpoints (exactly-once ingestion) ---------------------------------------------------
#
# Stream runners write each event's mutations together with the event's source position, so a
# batch re-delivered after a crash is not counted twice (SPEC 4.5, 8.1 "exactly-once scope").
#
# * A **position** is a string of decimal digits, ordered as a number within its
#   **partition** (a Kafka topic-partition, a Redis stream as read by one consumer...): a
#   shorter string is smaller, equal lengths compare as text (:func:`position_key`).
# * Every ``(fqn, entity)`` keeps a **fence** per ``(source, partition)``: the last position
#   applied to it. :meth:`CheckpointStore.apply_checkpointed` applies a write only if its
#   position is after the fence, and moves the fence **atomically with the write** (memory:
#   the whole call; Redis: one script per (feature, entity) on its own hash slot, and the whole
#   batch in one MULTI/EXEC outside Cluster). A re-delivered write is skipped where it landed
#   and applied where it did not, whatever part of a batch a crash interrupted.
# * Within one ``(fqn, entity)`` and partition, writes must come in position order (one reader
#   per partition at a time), as brokers deliver them.
# * The ``positions`` argument records, once every write of the call succeeded, the last
#   position handled per partition (events that wrote nothing count too); read it back with
#   :meth:`CheckpointStore.positions` to resume. It never moves backwards.
# * Fences expire ``checkpoint_ttl`` seconds after the last fenced write to their
#   ``(fqn, entity)`` (default 7 days: re-deliveries come long before).


class Positioned(NamedTuple):
    """A mutation caused by the event at ``position`` of ``partition`` (of one source)."""

    partition: str
    position: str
    mutation: ValueWrite | WindowAdd


def position_key(position: str) -> tuple[int, str]:
    """The sort key of a position: numeric order of decimal-digit strings. Pure.

    >>> sorted(["10", "9", "100"], key=position_key)
    ['9', '10', '100']
    """
    return (len(position), position)


CHECKPOINT_TTL = 7 * 24 * 3600.0
"""Seconds a fence lives after the last fenced write to its (fqn, entity)."""


@runtime_checkable
class CheckpointStore(Protocol):
    """A state store that records source positions atomically with writes (see above)."""

    async def apply_checkpointed(
        self,
        writes: Sequence[Positioned],
        now: int,
        source: str,
        positions: Mapping[str, str],
    ) -> list[bool]:
        """Apply ``writes`` in order, skipping every write whose position is not after the
        fence of its ``(fqn, entity)`` for ``(source, partition)``; one flag per write: True
        applied (as :meth:`StateStore.apply` would, including a value write ignored as older
        or a late window event), False skipped as a replay. Then record ``positions``
        (partition → position, kept only when ahead of what is recorded)."""
        ...

    async def positions(self, source: str) -> dict[str, str]:
        """The recorded position of every partition of ``source``."""
        ...


__all__ += ["CHECKPOINT_TTL", "CheckpointStore", "Positioned", "position_key"]
