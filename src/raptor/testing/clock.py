"""The fake clock of the test kit: :class:`FakeClock` has exactly ``now()`` (aware UTC datetime)
and ``now_micros()``, the clock the engine takes, and moves only when told. :data:`T0` is where it
starts, and where the conformance suite's times start too.
"""

from __future__ import annotations

from datetime import UTC, datetime

from raptor.api.timeutil import SECOND, from_micros, to_micros

__all__ = ["T0", "FakeClock"]

T0 = to_micros(datetime(2024, 6, 1, tzinfo=UTC))
"""Where the fake clock and the conformance suite start (a realistic, fixed instant)."""


class FakeClock:
    """A clock that moves only when told. Starts at 2024-06-01T00:00:00Z unless given ``start``
    (a datetime, naive read as UTC, or epoch microseconds)."""

    __slots__ = ("_micros",)

    def __init__(self, start: datetime | int = T0) -> None:
        self._micros = start if isinstance(start, int) else int(to_micros(start))

    def now(self) -> datetime:
        """The current instant, an aware UTC datetime."""
        return from_micros(self._micros)

    def now_micros(self) -> int:
        """The current instant in epoch microseconds."""
        return self._micros

    def advance(self, seconds: float = 0, *, micros: int = 0) -> None:
        """Move forward by ``seconds`` plus ``micros``; refuses to move backwards (use set)."""
        step = round(seconds * SECOND) + micros
        if step < 0:
            raise ValueError(f"FakeClock.advance cannot go back ({step} µs); use set()")
        self._micros += step

    def set(self, dt: datetime | int) -> None:
        """Jump to ``dt`` (a datetime, naive read as UTC, or epoch microseconds), either way."""
        self._micros = dt if isinstance(dt, int) else int(to_micros(dt))

    def __repr__(self) -> str:
        return f"FakeClock({self.now().isoformat()})"
