"""The Engine facade: ``get / get_many / set / append / incr / update / descriptor``.

Semantics are SPEC section 4, decided by the pure functions of :mod:`raptor.engine.freshness`
and :mod:`raptor.api.windows`; this module only sequences them around the state store.

* **Pushed** features (streaming, push, or anything windowed) are read, never computed.
* **Computed** features (sourceless, rest, model): a fresh stored value is returned; otherwise
  one computation per (feature, entity) runs — concurrent readers join it — and is awaited up to
  the feature's ``timeout``. Past it, a usable stale value is returned (``fresh=False``) while
  the computation finishes in the background and stores its result; with nothing usable the
  read fails with :class:`~raptor.errors.FeatureTimeout`. A computation that fails also falls
  back to the usable stale value (a cache that keeps serving), else raises.
* Computed values are stored, so freshness works for them too.
* Programs of sourceless features run in worker threads (:class:`ProgramExecutor`); the
  features they read through ``ctx.get_feature`` with literal selectors are fetched *before*
  the program runs, so a worker never blocks on the event loop for them.

Every background computation is a task owned by the engine and cancelled by :meth:`aclose`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from raptor.api.names import Selector, encode_entity, parse_selector
from raptor.api.timeutil import from_micros, parse_timestamp, to_micros
from raptor.api.windows import AggrFn, result
from raptor.engine.batch import BatchColumn, get_columns
from raptor.engine.catalog import Catalog, FeatureRuntime, ModelRuntime, check_dependency
from raptor.engine.clock import Clock, SystemClock
from raptor.engine.freshness import is_fresh, is_usable
from raptor.engine.pipeline import (
    FeatureValue,
    GetMiddleware,
    GetRequest,
    WriteMiddleware,
    WriteRequest,
    WriteResult,
    chain,
)
from raptor.engine.programs import ProgramExecutor, ProgramResult
from raptor.engine.sourceless import SourcelessComputer
from raptor.errors import (
    FeatureTimeout,
    InvalidArgument,
    NotFound,
    NotReady,
    RaptorError,
    ReadOnlyError,
    SelectorError,
    ValueTypeError,
)
from raptor.state import (
    StateStore,
    ValueWrite,
    WindowAdd,
    WriteOp,
)

__all__ = ["BatchColumn", "Computer", "Engine", "EngineSettings", "Update"]

log = logging.getLogger("raptor.engine")


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Engine knobs. ``program_hard_limit`` (seconds) stops a runaway program even when the
    feature has no timeout; ``program_workers`` sizes the program thread pool."""

    program_hard_limit: float = 10.0
    program_workers: int = 8


class Computer(Protocol):
    """Computes the value of an on-request feature (a builder's request-time half)."""

    async def compute(
        self, engine: Engine, feature: FeatureRuntime, keys: Mapping[str, str], now: int
    ) -> ProgramResult | None: ...


@dataclass(frozen=True, slots=True)
class Update:
    """One ingested value for :meth:`Engine.apply_updates` (already type-checked)."""

    feature: FeatureRuntime
    keys: Mapping[str, str]
    value: Any
    timestamp: int


class Engine:
    """The feature engine. Construct once; swap catalogs with :meth:`load`."""

    def __init__(
        self,
        state: StateStore,
        *,
        clock: Clock | None = None,
        catalog: Catalog | None = None,
        settings: EngineSettings | None = None,
        get_middlewares: Sequence[GetMiddleware] = (),
        write_middlewares: Sequence[WriteMiddleware] = (),
        computers: Mapping[str, Computer] | None = None,
    ) -> None:
        self.state = state
        self.clock: Clock = clock or SystemClock()
        self.settings = settings or EngineSettings()
        self._catalog = catalog or Catalog()
        self._get = chain(get_middlewares, self._get_core)
        self._direct = not get_middlewares
        self._write = chain(write_middlewares, self._write_core)
        self.executor = ProgramExecutor(max_workers=self.settings.program_workers)
        self.computers: dict[str, Computer] = {"sourceless": SourcelessComputer()}
        if computers:
            self.computers.update(computers)
        self._resolved: dict[tuple[str, str], tuple[Selector, FeatureRuntime]] = {}
        self._inflight: dict[tuple[str, str], asyncio.Task[FeatureValue]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- catalog ---------------------------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        return self._catalog

    def load(self, catalog: Catalog) -> None:
        """Serve a new catalog from the next request on. State is kept (keyed by FQN)."""
        self._catalog = catalog
        self._resolved = {}

    def descriptor(
        self, selector: str | Selector, namespace: str = "default"
    ) -> FeatureRuntime | ModelRuntime:
        sel = selector if isinstance(selector, Selector) else parse_selector(selector, namespace)
        return self._lookup(sel)

    def _lookup(self, sel: Selector) -> FeatureRuntime | ModelRuntime:
        cat = self._catalog
        rt = cat.features.get(sel.fqn)
        if rt is not None:
            return rt
        model = cat.models.get(sel.fqn)
        if model is not None:
            return model
        for kind in ("Feature", "Model"):
            status = cat.statuses.get(f"{kind}/{sel.fqn}")
            if status is not None:
                raise NotReady(f"{kind.lower()} {sel.fqn} is not ready: {status.message}")
        raise NotFound(f"feature {sel.fqn} not found")

    def _feature(self, sel: Selector) -> FeatureRuntime:
        rt = self._lookup(sel)
        if isinstance(rt, ModelRuntime):
            raise NotReady(
                f"model {sel.fqn}: model server {rt.server!r} is not available in this process"
            )
        return rt

    # -- reads -----------------------------------------------------------------------------

    async def get(
        self, selector: str | Selector, keys: Mapping[str, str], namespace: str = "default"
    ) -> FeatureValue:
        """Read one value (SPEC 4.2/4.3). Raises RaptorError subclasses for bad requests."""
        if type(selector) is str:
            hit = self._resolved.get((selector, namespace))
            if hit is None:
                sel = parse_selector(selector, namespace)
                target = self._lookup(sel)
                if isinstance(target, ModelRuntime):
                    return await self._get_model(sel, target, keys)
                problem = check_dependency(sel, target.defn)
                if problem:
                    raise SelectorError(problem)
                hit = (sel, target)
                if len(self._resolved) < 100_000:
                    self._resolved[(selector, namespace)] = hit
            sel, rt = hit
        else:
            sel = selector if isinstance(selector, Selector) else parse_selector(selector)
            target = self._lookup(sel)
            if isinstance(target, ModelRuntime):
                return await self._get_model(sel, target, keys)
            problem = check_dependency(sel, target.defn)
            if problem:
                raise SelectorError(problem)
            rt = target
        entity = encode_entity(rt.defn.keys, keys, rt.fqn)
        if self._direct:
            return await self._read(sel, rt, keys, entity, self.clock.now_micros())
        return await self._get(GetRequest(sel, rt, keys, entity, self.clock.now_micros()))

    async def get_many(
        self,
        selectors: Sequence[str | Selector],
        entities: Sequence[Mapping[str, str]],
        namespace: str = "default",
    ) -> list[list[FeatureValue | RaptorError]]:
        """Read every selector for every entity; a per-cell error is returned, not raised.

        Entity-major: ``rows[i][j]`` is selector ``j`` for entity ``i``, as :meth:`get` would
        return it. The cells of :meth:`get_columns`, one :class:`FeatureValue` each (callers
        that encode a whole batch should use :meth:`get_columns` itself: no record per cell).
        """
        columns = await self.get_columns(selectors, entities, namespace)
        if not columns:
            return [[] for _ in entities]
        when: dict[int | None, datetime | None] = {None: None}
        by_column: list[list[FeatureValue | RaptorError]] = []
        for col in columns:
            stamps = col.timestamps
            for t in set(stamps).difference(when):
                assert t is not None
                when[t] = from_micros(t)
            fqn, text = col.fqn, col.selector.text
            cells: list[FeatureValue | RaptorError] = [
                FeatureValue(fqn, text, keys, v, when[t], f)
                for keys, v, t, f in zip(entities, col.values, stamps, col.fresh, strict=True)
            ]
            for r, exc in col.errors.items():
                cells[r] = exc
            by_column.append(cells)
        return [list(row) for row in zip(*by_column, strict=True)]

    async def get_columns(
        self,
        selectors: Sequence[str | Selector],
        entities: Sequence[Mapping[str, str]],
        namespace: str = "default",
    ) -> list[BatchColumn]:
        """Read every selector for every entity, column by column: see
        :func:`raptor.engine.batch.get_columns` (the batch read without a record per cell)."""
        return await get_columns(self, selectors, entities, namespace)

    @property
    def direct_reads(self) -> bool:
        """True when no get middleware is installed (reads may bypass the pipeline)."""
        return self._direct

    async def _get_core(self, req: GetRequest) -> FeatureValue:
        return await self._read(req.selector, req.feature, req.keys, req.entity, req.now)

    async def _read(
        self,
        sel: Selector,
        rt: FeatureRuntime,
        keys: Mapping[str, str],
        entity: str,
        now: int,
    ) -> FeatureValue:
        defn = rt.defn
        fqn = rt.fqn
        if defn.aggr:
            fn = AggrFn.parse(sel.aggr) if sel.aggr else defn.aggr[0]
            assert defn.window is not None
            partial = await self.state.window_read(fqn, entity, defn.window, now)
            return FeatureValue(fqn, sel.text, keys, result(partial, fn), from_micros(now), True)
        if sel.version:
            versions = await self.state.read(fqn, entity, sel.version, now)
            item = versions[sel.version]
            if item is None:
                return FeatureValue(fqn, sel.text, keys, None, None, False)
            return FeatureValue(
                fqn,
                sel.text,
                keys,
                item.value,
                from_micros(item.timestamp),
                now - item.timestamp <= defn.freshness,
            )
        current = (await self.state.read(fqn, entity, 0, now))[0]
        if current is not None:
            ts = current.timestamp
            if now - ts <= defn.freshness:  # freshness.is_fresh, inlined on the hot path
                return FeatureValue(fqn, sel.text, keys, current.value, from_micros(ts), True)
            if is_usable(ts, now, defn.staleness):
                stale = FeatureValue(fqn, sel.text, keys, current.value, from_micros(ts), False)
                return (
                    await self._compute(sel, rt, keys, entity, now, stale) if rt.computed else stale
                )
        if not rt.computed:
            return FeatureValue(fqn, sel.text, keys, None, None, False)
        return await self._compute(sel, rt, keys, entity, now, None)

    async def _compute(
        self,
        sel: Selector,
        rt: FeatureRuntime,
        keys: Mapping[str, str],
        entity: str,
        now: int,
        stale: FeatureValue | None,
    ) -> FeatureValue:
        key = (rt.fqn, entity)
        task = self._inflight.get(key)
        if task is None:
            req = GetRequest(sel, rt, keys, entity, now)
            task = asyncio.get_running_loop().create_task(self._compute_and_store(req))
            self._inflight[key] = task
            self._tasks.add(task)
            task.add_done_callback(lambda t: self._settle(key, t))
        timeout = rt.defn.timeout / 1_000_000 if rt.defn.timeout else None
        try:
            if timeout is None:
                return await asyncio.shield(task)
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except TimeoutError:
            if stale is not None:
                return stale
            raise FeatureTimeout(
                f"feature {rt.fqn}: no value within its timeout of {timeout}s"
            ) from None
        except RaptorError as exc:
            if stale is not None:
                log.warning("feature %s: computation failed, serving stale value: %s", rt.fqn, exc)
                return stale
            raise

    def _settle(self, key: tuple[str, str], task: asyncio.Task[FeatureValue]) -> None:
        self._tasks.discard(task)
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled() and task.exception() is not None:
            # Retrieved here so a background failure nobody awaited is logged, not lost.
            log.debug("feature %s: computation failed: %s", key[0], task.exception())

    async def _compute_and_store(self, req: GetRequest) -> FeatureValue:
        rt = req.feature
        computer = self.computers.get(rt.kind)
        if computer is None:
            raise NotReady(f"feature {rt.fqn}: no {rt.kind!r} builder runs in this process")
        res = await computer.compute(self, rt, req.keys, req.now)
        if res is None or res.value is None:
            return FeatureValue(rt.fqn, str(req.selector), req.keys, None, None, False)
        ts = to_micros(res.timestamp) if res.timestamp is not None else req.now
        stored = await self.state.write(
            rt.fqn, req.entity, WriteOp.SET, res.value, ts, rt.policy, self.clock.now_micros()
        )
        value = res.value if stored is None else stored.value
        return FeatureValue(
            rt.fqn,
            str(req.selector),
            req.keys,
            value,
            from_micros(ts),
            is_fresh(ts, self.clock.now_micros(), rt.defn.freshness),
        )

    async def _get_model(
        self, sel: Selector, rt: ModelRuntime, keys: Mapping[str, str]
    ) -> FeatureValue:
        # Model serving (builtin / Open Inference Protocol servers) is not built yet: a model is
        # validated, listed and exported, and a read says plainly why it cannot answer.
        raise NotReady(
            f"model {rt.fqn}: no model server runs in this process "
            f"(modelServer {rt.server!r}; model serving is not available yet)"
        )

    # -- writes ----------------------------------------------------------------------------

    async def set(
        self,
        selector: str | Selector,
        keys: Mapping[str, str],
        value: Any,
        timestamp: datetime | str | float | None = None,
        namespace: str = "default",
    ) -> WriteResult:
        """Replace the value (scalars and whole lists)."""
        return await self._write_op("set", selector, keys, value, timestamp, namespace)

    async def append(
        self,
        selector: str | Selector,
        keys: Mapping[str, str],
        value: Any,
        timestamp: datetime | str | float | None = None,
        namespace: str = "default",
    ) -> WriteResult:
        """Add one element to a list feature."""
        return await self._write_op("append", selector, keys, value, timestamp, namespace)

    async def incr(
        self,
        selector: str | Selector,
        keys: Mapping[str, str],
        value: Any,
        timestamp: datetime | str | float | None = None,
        namespace: str = "default",
    ) -> WriteResult:
        """Add to an int/float scalar."""
        return await self._write_op("incr", selector, keys, value, timestamp, namespace)

    async def update(
        self,
        selector: str | Selector,
        keys: Mapping[str, str],
        value: Any,
        timestamp: datetime | str | float | None = None,
        namespace: str = "default",
    ) -> WriteResult:
        """Set for scalars, Append for lists, add-to-window for windowed features."""
        return await self._write_op("update", selector, keys, value, timestamp, namespace)

    def prepare_write(
        self,
        op_name: str,
        selector: str | Selector,
        keys: Mapping[str, str],
        value: Any,
        timestamp: datetime | str | float | None,
        namespace: str = "default",
    ) -> WriteRequest:
        """Validate a write and build its request (pure apart from reading the clock)."""
        sel = selector if isinstance(selector, Selector) else parse_selector(selector, namespace)
        rt = self._lookup(sel)
        if isinstance(rt, ModelRuntime):
            raise ReadOnlyError(f"{sel.fqn} is a model: its predictions cannot be written")
        if sel.aggr or sel.version:
            raise SelectorError(
                f"{sel}: write to the feature itself ({sel.fqn}), not to +fn or @-N"
            )
        defn = rt.defn
        entity = encode_entity(defn.keys, keys, rt.fqn)
        now = self.clock.now_micros()
        if timestamp is None:
            ts = now
        else:
            try:
                ts = to_micros(parse_timestamp(timestamp))
            except ValueError as exc:
                raise InvalidArgument(f"timestamp: {exc}") from None
        prim = defn.primitive
        op: WriteOp | None
        if defn.aggr:
            if op_name not in ("update", "incr", "append"):
                raise InvalidArgument(
                    f"{rt.fqn} is a windowed aggregation: use update to add a value"
                )
            checked = prim.check(value)
            op = None
        elif op_name == "set":
            checked, op = prim.check(value), WriteOp.SET
        elif op_name == "append":
            if not prim.is_list:
                raise InvalidArgument(f"append needs a list feature; {rt.fqn} is {prim.value}")
            checked, op = prim.check_element(value), WriteOp.APPEND
        elif op_name == "incr":
            if not prim.numeric:
                raise InvalidArgument(
                    f"incr needs an int or float feature; {rt.fqn} is {prim.value}"
                )
            checked, op = prim.check(value), WriteOp.INCR
        elif op_name == "update":
            if prim.is_list:
                checked, op = prim.check_element(value), WriteOp.APPEND
            else:
                checked, op = prim.check(value), WriteOp.SET
        else:
            raise InvalidArgument(f"unknown write operation {op_name!r}")
        return WriteRequest(rt, op, keys, entity, checked, ts, now)

    async def _write_op(
        self,
        op_name: str,
        selector: str | Selector,
        keys: Mapping[str, str],
        value: Any,
        timestamp: datetime | str | float | None,
        namespace: str,
    ) -> WriteResult:
        try:
            req = self.prepare_write(op_name, selector, keys, value, timestamp, namespace)
        except ValueTypeError as exc:
            sel = (
                selector if isinstance(selector, Selector) else parse_selector(selector, namespace)
            )
            raise ValueTypeError(f"{sel.fqn}: {exc}") from None
        return await self._write(req)

    async def _write_core(self, req: WriteRequest) -> WriteResult:
        rt = req.feature
        defn = rt.defn
        if req.op is None:
            assert defn.window is not None
            x = req.value if defn.primitive.numeric else 1
            counted = await self.state.window_add(
                rt.fqn, req.entity, defn.window, [(req.timestamp, x)], req.now
            )
            return WriteResult(rt.fqn, req.keys, req.value, from_micros(req.timestamp), counted > 0)
        if defn.staleness and req.now - req.timestamp > defn.staleness:
            return WriteResult(rt.fqn, req.keys, req.value, from_micros(req.timestamp), False)
        stored = await self.state.write(
            rt.fqn, req.entity, req.op, req.value, req.timestamp, rt.policy, req.now
        )
        if stored is None:
            return WriteResult(rt.fqn, req.keys, req.value, from_micros(req.timestamp), False)
        return WriteResult(rt.fqn, req.keys, stored.value, from_micros(stored.timestamp), True)

    async def apply_updates(self, updates: Sequence[Update]) -> int:
        """Apply many ``Update`` semantics writes in one state call (ingestion). Values must be
        checked already. Returns how many changed online state."""
        now = self.clock.now_micros()
        muts: list[ValueWrite | WindowAdd] = []
        windows: dict[tuple[str, str], list[tuple[int, Any]]] = {}
        wins: dict[tuple[str, str], FeatureRuntime] = {}
        for u in updates:
            rt = u.feature
            defn = rt.defn
            entity = encode_entity(defn.keys, u.keys, rt.fqn)
            if defn.aggr:
                key = (rt.fqn, entity)
                windows.setdefault(key, []).append(
                    (u.timestamp, u.value if defn.primitive.numeric else 1)
                )
                wins[key] = rt
                continue
            if defn.staleness and now - u.timestamp > defn.staleness:
                continue
            op = WriteOp.APPEND if defn.primitive.is_list else WriteOp.SET
            muts.append(ValueWrite(rt.fqn, entity, op, u.value, u.timestamp, rt.policy))
        for (fqn, entity), events in windows.items():
            window = wins[(fqn, entity)].defn.window
            assert window is not None
            muts.append(WindowAdd(fqn, entity, window, events))
        if not muts:
            return 0
        results = await self.state.apply(muts, now)
        return sum(1 for r in results if (r if isinstance(r, int) else r is not None))

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Cancel background computations and stop the program workers."""
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.executor.close()
