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
