"""Freshness and staleness decisions (SPEC 4.2). Pure functions of integer microseconds.

A value stamped ``ts`` is *fresh* at ``now`` when ``now - ts <= freshness`` and *usable* when
``now - ts <= staleness`` (a staleness of 0 means "never stale"). Future-dated values
(``ts > now``) are fresh.

>>> is_fresh(ts=0, now=10, freshness=10), is_fresh(0, 11, 10)
(True, False)
>>> is_usable(0, 10**9, 0)
True
"""

from __future__ import annotations

__all__ = ["is_fresh", "is_usable"]


def is_fresh(ts: int, now: int, freshness: int) -> bool:
    """True when a value stamped ``ts`` needs no recomputation at ``now``."""
    return now - ts <= freshness


def is_usable(ts: int, now: int, staleness: int) -> bool:
    """True when a value stamped ``ts`` may still be served at ``now`` (possibly stale)."""
    return staleness == 0 or now - ts <= staleness
