"""Clocks: the only way the engine learns the time (STYLE rule 6).

The engine takes a :class:`Clock`; production uses :class:`SystemClock`, tests use
:class:`raptor.testing.FakeClock`. Both give aware UTC datetimes and epoch microseconds.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["Clock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, aware UTC."""
        ...

    def now_micros(self) -> int:
        """The current instant in epoch microseconds."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def now_micros(self) -> int:
        return time.time_ns() // 1000
