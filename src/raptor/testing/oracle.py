"""The naive window oracle of the test kit: :func:`oracle_window` recomputes a window straight from
SPEC 4.3, event by event, with none of the bucket machinery of :mod:`raptor.api.windows`; stores
(the conformance suite) and the SDK replay are checked against it. Pure.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from raptor.api.windows import Partial, WindowSpec

__all__ = ["oracle_window"]


def oracle_window(
    events: Iterable[tuple[int, Any] | tuple[int, Any, int]], window: WindowSpec, at: int
) -> Partial:
    """The window value at ``at``, recomputed naively from SPEC 4.3. Pure.

    ``events`` are ``(t, value)`` or ``(t, value, added_at)``: an event carrying the ``now`` it
    was added at is dropped when it was late then (its bucket already out of the window at
    ``added_at``). The result counts every remaining event with ``t <= at`` and
    ``b(at) - n + 1 <= b(t) <= b(at)``, where ``b(t) = floor(t / g)`` and ``n = ceil(W / g)``.
    """
    g = window.granularity
    n = -(-window.over // g)
    hi = at // g
    xs: list[Any] = []
    for t, x, *added in events:
        if added and t // g < added[0] // g - n + 1:
            continue
        if t <= at and hi - n + 1 <= t // g <= hi:
            xs.append(x)
    if not xs:
        return (0, 0, None, None)
    return (sum(xs), len(xs), min(xs), max(xs))
