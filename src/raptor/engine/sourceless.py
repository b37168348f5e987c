"""The ``sourceless`` computer: a feature's program run on request, with an empty row.

Registered by the :class:`~raptor.engine.engine.Engine` under ``"sourceless"``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from raptor.api.names import Selector, parse_selector
from raptor.api.timeutil import from_micros
from raptor.engine.catalog import FeatureRuntime
from raptor.engine.programs import Context, ProgramResult
from raptor.errors import RaptorError

if TYPE_CHECKING:
    from raptor.engine.engine import Engine

__all__ = ["SourcelessComputer", "request_context"]


class SourcelessComputer:
    """Runs a feature's program on request with an empty row (ctx only).

    Literal dependencies are fetched first, concurrently, on the event loop; the program then
    runs in a worker thread. Other ``ctx.get_feature`` calls (computed selectors, other keys)
    are bridged back to the loop.
    """

    async def compute(
        self, engine: Engine, feature: FeatureRuntime, keys: Mapping[str, str], now: int
    ) -> ProgramResult | None:
        program = feature.program
        if program is None:
            return None
        ctx = await request_context(engine, feature, keys, now)
        return await engine.executor.run(program, {}, ctx, engine.settings.program_hard_limit)


async def request_context(
    engine: Engine, feature: FeatureRuntime, keys: Mapping[str, str], now: int
) -> Context:
    """The ``ctx`` of a program run on request (sourceless and rest builders).

    The feature's literal dependencies are fetched first, concurrently, on the event loop (a
    failed one reads as no value); any other ``ctx.get_feature`` call from the worker thread
    is bridged back to the loop and waits at most the program hard limit.
    """
    namespace = feature.defn.namespace
    prefetched = await _prefetch(engine, feature.dependencies, keys)
    loop = asyncio.get_running_loop()
    hard = engine.settings.program_hard_limit

    def fetch(selector: str, other: Mapping[str, str] | None) -> tuple[Any, datetime | None]:
        sel = parse_selector(selector, namespace)
        if other is None or dict(other) == dict(keys):
            hit = prefetched.get(sel)
            if hit is not None:
                return hit
        fut = asyncio.run_coroutine_threadsafe(
            engine.get(sel, keys if other is None else other), loop
        )
        try:
            v = fut.result(timeout=hard)
        except RaptorError:
            return (None, None)
        return (v.value, v.timestamp)

    return Context(
        fqn=feature.fqn,
        namespace=namespace,
        keys=keys,
        timestamp=from_micros(now),
        get_feature=fetch,
        get_prediction=fetch,
    )


async def _prefetch(
    engine: Engine, deps: Sequence[Selector], keys: Mapping[str, str]
) -> dict[Selector, tuple[Any, datetime | None]]:
    if not deps:
        return {}

    async def one(sel: Selector) -> tuple[Any, datetime | None]:
        try:
            v = await engine.get(sel, keys)
        except RaptorError:
            return (None, None)
        return (v.value, v.timestamp)

    values = await asyncio.gather(*(one(d) for d in deps))
    return dict(zip(deps, values, strict=True))
