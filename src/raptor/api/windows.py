"""Windowed aggregations: the bucketing contract of SPEC 4.3, as pure integer maths.

This module is the single definition of window semantics shared by the engine, every state
backend (the Redis store runs the same cover in Lua) and the SDK's offline replay, so that online
and offline agree exactly. It lives in ``api`` rather than ``engine`` for that reason: state
backends sit below the engine and must not import it.

Time is integer microseconds since the UTC epoch.

* Bucket of an event at ``t``: ``b(t) = t // g``; ``n = ceil(W / g)``.
* The value at query time ``T`` aggregates every event with ``t <= T`` and
  ``b(T) - n + 1 <= b(t) <= b(T)``.
* Each bucket holds a mergeable :class:`Partial` (sum, count, min, max); ``avg = sum / count``.
* Long windows stay cheap: besides the fine buckets (level 0), every event is also added to
  coarser, pre-merged buckets at levels ``1..L-1`` (level ``l`` spans ``FANOUT**l`` fine
  buckets, aligned). :meth:`WindowSpec.cover` splits ``[lo, hi]`` into the fewest aligned
  buckets across levels, so a 30-day window at one-minute granularity merges at most 45
  partials instead of 43,200, with the same result. In general a cover has at most
  ``2 * (FANOUT - 1) * (levels - 1) + buckets // FANOUT**(levels - 1)`` pieces (up to
  ``FANOUT - 1`` partial buckets on each side of every level below the top, then whole
  top-level buckets), hence at most ``2 * (FANOUT - 1) * (levels - 1) + TOP_LEVEL_TARGET``.
* A cover depends only on the query's level-0 bucket, so every read within one granularity
  shares it: a :class:`WindowSpec` caches its latest cover (an immutable tuple).
* Bucket ``(level, index)`` can be dropped once ``at`` passes :meth:`WindowSpec.bucket_expiry`
  (its end + ``over`` + ``grace``); no read at a later time can use it.

>>> w = WindowSpec(granularity=60_000_000, over=3_600_000_000)
>>> w.buckets, w.levels
(60, 2)
>>> p = initial()
>>> for x in (3, 1, 2): p = add(p, x)
>>> result(p, AggrFn.AVG), result(p, AggrFn.MIN), result(initial(), AggrFn.SUM)
(2.0, 1, 0)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_GRACE",
    "FANOUT",
    "TOP_LEVEL_TARGET",
    "AggrFn",
    "BucketId",
    "Partial",
    "WindowSpec",
    "add",
    "initial",
    "merge",
    "merge_all",
    "result",
]

FANOUT = 8
"""How many buckets of level ``l`` make one bucket of level ``l + 1``."""

TOP_LEVEL_TARGET = 16
"""Levels are added until a window spans at most about this many top-level buckets."""

DEFAULT_GRACE = 300_000_000
"""Buckets outlive their window by this much (5 minutes) so the historian can collect them."""


class AggrFn(enum.Enum):
    """Aggregation functions. ``mean`` is accepted as an alias of ``avg``."""

    SUM = "sum"
    COUNT = "count"
    MIN = "min"
    MAX = "max"
    AVG = "avg"

    @classmethod
    def parse(cls, text: str) -> AggrFn:
        t = text.strip().lower() if isinstance(text, str) else text
        if t == "mean":
            return cls.AVG
        try:
            return cls(t)
        except ValueError:
            raise ValueError(
                f"unknown aggregation {text!r}; expected sum, count, min, max, avg (or mean)"
            ) from None


Partial = tuple[Any, int, Any, Any]
"""Mergeable partial state ``(sum, count, min, max)``; ``min``/``max`` are ``None`` when empty."""

BucketId = tuple[int, int]
"""``(level, index)``: index counts level-``level`` buckets from the epoch."""


def initial() -> Partial:
    """The empty partial."""
    return (0, 0, None, None)


def add(p: Partial, x: Any) -> Partial:
    """Fold one value into a partial. Pure."""
    s, c, mn, mx = p
    if c == 0:
        return (x, 1, x, x)
    return (s + x, c + 1, x if x < mn else mn, x if x > mx else mx)


def merge(a: Partial, b: Partial) -> Partial:
    """Merge two partials (associative and commutative up to float rounding). Pure."""
    if a[1] == 0:
        return b
    if b[1] == 0:
        return a
    return (
        a[0] + b[0],
        a[1] + b[1],
        a[2] if a[2] <= b[2] else b[2],
        a[3] if a[3] >= b[3] else b[3],
    )


def merge_all(parts: Iterable[Partial]) -> Partial:
    """Merge many partials in one pass. Pure."""
    s: Any = 0
    c = 0
    mn: Any = None
    mx: Any = None
    for ps, pc, pmn, pmx in parts:
        if pc == 0:
            continue
        if c == 0:
            s, mn, mx = ps, pmn, pmx
        else:
            s = s + ps
            if pmn < mn:
                mn = pmn
            if pmx > mx:
                mx = pmx
        c += pc
    return (s, c, mn, mx)


def result(p: Partial, fn: AggrFn) -> Any:
    """The value of ``fn`` over a partial (SPEC 8: count is int, avg float, empty → 0 or None)."""
    s, c, mn, mx = p
    if fn is AggrFn.COUNT:
        return c
    if fn is AggrFn.SUM:
        return s
    if c == 0:
        return None
    if fn is AggrFn.MIN:
        return mn
    if fn is AggrFn.MAX:
        return mx
    return s / c


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """A window of length ``over`` at ``granularity`` (both microseconds, > 0), whose buckets are
    kept ``grace`` (>= 0) past the window. Pure maths; equal specs are interchangeable."""

    granularity: int
    over: int
    grace: int = DEFAULT_GRACE
    buckets: int = field(init=False)
    levels: int = field(init=False)
    _cover_cache: tuple[int, tuple[BucketId, ...]] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.granularity <= 0:
            raise ValueError("window granularity must be positive")
        if self.over <= 0:
            raise ValueError("window length must be positive")
        if self.grace < 0:
            raise ValueError("window grace must not be negative")
        n = -(-self.over // self.granularity)
        levels = 1
        while n > TOP_LEVEL_TARGET * FANOUT ** (levels - 1):
            levels += 1
        object.__setattr__(self, "buckets", n)
        object.__setattr__(self, "levels", levels)

    def bucket(self, t: int) -> int:
        """Level-0 bucket index of instant ``t``."""
        return t // self.granularity

    def span(self, at: int) -> tuple[int, int]:
        """Inclusive level-0 bucket range ``(lo, hi)`` of the window read at ``at``."""
        hi = at // self.granularity
        return hi - self.buckets + 1, hi

    def is_late(self, t: int, now: int) -> bool:
        """True when an event at ``t`` is already out of the window at ``now`` (never counted)."""
        return t // self.granularity < now // self.granularity - self.buckets + 1

    def targets(self, t: int) -> list[BucketId]:
        """Every bucket (one per level) that an event at ``t`` is added to."""
        b = t // self.granularity
        out = [(0, b)]
        for level in range(1, self.levels):
            b //= FANOUT
            out.append((level, b))
        return out

    def cover(self, at: int) -> tuple[BucketId, ...]:
        """The fewest aligned buckets, across levels, that exactly cover the window at ``at``,
        finest first. Depends only on ``at``'s level-0 bucket; the latest one is cached."""
        hi = at // self.granularity
        cached = self._cover_cache
        if cached is not None and cached[0] == hi:
            return cached[1]
        out = self._cover(hi)
        object.__setattr__(self, "_cover_cache", (hi, out))
        return out

    def _cover(self, hi: int) -> tuple[BucketId, ...]:
        lo = hi - self.buckets + 1
        out: list[BucketId] = []
        level = 0
        top = self.levels - 1
        while lo <= hi:
            if level == top:
                out.extend((level, i) for i in range(lo, hi + 1))
                break
            while lo <= hi and lo % FANOUT:
                out.append((level, lo))
                lo += 1
            while lo <= hi and (hi + 1) % FANOUT:
                out.append((level, hi))
                hi -= 1
            if lo > hi:
                break
            lo //= FANOUT
            hi = (hi + 1) // FANOUT - 1
            level += 1
        return tuple(out)

    def bucket_expiry(self, bucket: BucketId) -> int:
        """Instant after which a bucket can be dropped: its end + window + grace."""
        level, index = bucket
        end: int = (index + 1) * self.granularity * FANOUT**level
        return end + self.over + self.grace
