"""Raptor's public test kit: a fake clock, the naive window oracle, and the conformance suite that
every :class:`~raptor.state.StateStore` backend passes.

For tests only: the suite needs pytest, pytest-asyncio and hypothesis (the ``dev`` extra), and
importing this package imports the suite. ``import raptor`` never imports this package.

* :class:`FakeClock` (:mod:`raptor.testing.clock`) has exactly ``now()`` (aware UTC datetime) and
  ``now_micros()``, the clock the engine takes, and moves only when told.
* :func:`oracle_window` (:mod:`raptor.testing.oracle`) recomputes a window straight from SPEC
  4.3, event by event, with none of the bucket machinery of :mod:`raptor.api.windows`; stores and
  the SDK replay are checked against it.
* :class:`StateStoreConformance` (:mod:`raptor.testing.conformance`) is a pytest mix-in that a
  backend's test module subclasses, providing an async fixture ``store``.

The public names are the ones below; import them from ``raptor.testing``, not its modules.

>>> clock = FakeClock()
>>> clock.now().isoformat()
'2024-06-01T00:00:00+00:00'
>>> clock.advance(1.5, micros=1)
>>> clock.now_micros() - FakeClock().now_micros()
1500001
"""

from raptor.testing.clock import FakeClock
from raptor.testing.conformance import StateStoreConformance
from raptor.testing.oracle import oracle_window

__all__ = ["FakeClock", "StateStoreConformance", "oracle_window"]
