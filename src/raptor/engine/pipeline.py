"""Requests, results and the middleware pipeline around the engine's reads and writes.

A middleware wraps the next handler, starlette-style: it may look at or change the request,
call ``call_next`` (or not), and look at or change the result. Builders and cross-cutting
concerns plug in here — e.g. metrics around ``get``, the historian after writes, a builder that
answers reads of its features itself. With no middleware the engine calls its core handler
directly (no pipeline cost on the hot path).

>>> import asyncio
>>> async def core(req):
...     return req * 2
>>> async def plus_one(req, call_next):  # changes the request, then calls the next handler
...     return await call_next(req + 1)
>>> asyncio.run(chain([plus_one], core)(20))
42
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple, TypeVar

from raptor.api.names import Selector
from raptor.engine.catalog import FeatureRuntime
from raptor.state import WriteOp

__all__ = [
    "FeatureValue",
    "GetHandler",
    "GetMiddleware",
    "GetRequest",
    "WriteHandler",
    "WriteMiddleware",
    "WriteRequest",
    "WriteResult",
    "chain",
]


@dataclass(frozen=True, slots=True)
class GetRequest:
    selector: Selector
    feature: FeatureRuntime
    keys: Mapping[str, str]
    entity: str
    now: int  # epoch microseconds


class FeatureValue(NamedTuple):
    """A value as the accessor returns it (SPEC 5): ``value`` None = no value.

    A named tuple (immutable, cheap to build): one is made per cell of every read."""

    fqn: str
    selector: str
    keys: Mapping[str, str]
    value: Any
    timestamp: datetime | None
    fresh: bool


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One write. ``op`` None means a window add (an ``Update`` of a windowed feature)."""

    feature: FeatureRuntime
    op: WriteOp | None
    keys: Mapping[str, str]
    entity: str
    value: Any
    timestamp: int
    now: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    """What a write did: ``applied`` False when it was older than the stored value or than
    the staleness (it still goes to history), or late for its window."""

    fqn: str
    keys: Mapping[str, str]
    value: Any
    timestamp: datetime
    applied: bool


R = TypeVar("R")
Q = TypeVar("Q")
GetHandler = Callable[[GetRequest], Awaitable[FeatureValue]]
GetMiddleware = Callable[[GetRequest, GetHandler], Awaitable[FeatureValue]]
WriteHandler = Callable[[WriteRequest], Awaitable[WriteResult]]
WriteMiddleware = Callable[[WriteRequest, WriteHandler], Awaitable[WriteResult]]


def chain(
    middlewares: Sequence[Callable[[Q, Callable[[Q], R]], R]], handler: Callable[[Q], R]
) -> Callable[[Q], R]:
    """Compose middlewares around ``handler``; the first middleware is the outermost."""
    for mw in reversed(middlewares):
        handler = _bind(mw, handler)
    return handler


def _bind(mw: Callable[[Q, Callable[[Q], R]], R], nxt: Callable[[Q], R]) -> Callable[[Q], R]:
    def call(req: Q) -> R:
        return mw(req, nxt)

    return call
