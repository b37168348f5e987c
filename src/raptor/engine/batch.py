"""Batch reads: every selector for every entity, column by column (``Engine.get_columns``).

The batch path of SPEC 4.2/4.3 without a record per cell: stored values of every cell come
from ONE state call (:func:`raptor.state.read_columns`), each feature is decided per column in
one loop, and only cells that need a computation (computed features, models) take the
one-by-one ``Engine.get`` path. Split from :mod:`raptor.engine.engine`, which delegates here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from operator import itemgetter
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from raptor.api.names import Selector, encode_entity, parse_selector
from raptor.api.timeutil import to_micros
from raptor.api.windows import AggrFn, Partial
from raptor.engine.catalog import FeatureRuntime, ModelRuntime, check_dependency
from raptor.errors import RaptorError, SelectorError
from raptor.state import (
    ColumnRead,
    ValueColumn,
    ValueColumnRead,
    WindowColumnRead,
    read_columns,
)

if TYPE_CHECKING:
    from raptor.engine.engine import Engine

__all__ = ["BatchColumn", "aggregate", "encode_entities", "get_columns"]


class BatchColumn(NamedTuple):
    """One selector's cells for every entity of a batch read (:meth:`Engine.get_columns`).

    Cell ``i`` (entity ``i``) is ``values[i]``, ``timestamps[i]`` (epoch microseconds; ``None``
    without a value) and ``fresh[i]``, exactly as :meth:`Engine.get` returns it; a cell that
    failed is ``errors[i]`` instead (its other entries are then ``None, None, False``)."""

    selector: Selector
    fqn: str
    values: list[Any]
    timestamps: list[int | None]
    fresh: list[bool]
    errors: dict[int, RaptorError]


async def get_columns(
    engine: Engine,
    selectors: Sequence[str | Selector],
    entities: Sequence[Mapping[str, str]],
    namespace: str = "default",
) -> list[BatchColumn]:
    """Read every selector for every entity, column by column (one :class:`BatchColumn`
    per selector, in order): the batch read without a record per cell.

    Every cell is what :meth:`Engine.get` returns for it (SPEC 4.2/4.3 decided the same way); a
    cell that fails (e.g. a missing key) is in its column's ``errors``. An unknown
    selector, or one that does not fit its feature, raises for the whole batch (no cell
    could succeed). Stored values of every cell are fetched in ONE state call
    (:func:`raptor.state.read_columns`: the store's column fast path when it has one, else
    one ``read_batch``); each feature is decided per column in one loop (a whole column
    fresh: no loop at all; a window's cover computed once). Only computed features that
    need computing, and models, take the one-by-one :meth:`Engine.get` path. With get
    middlewares installed every cell goes through them.
    """
    resolved = _resolve(engine, selectors, namespace)
    n = len(entities)
    columns = [
        BatchColumn(sel, target.fqn, [None] * n, [None] * n, [False] * n, {})
        for sel, target in resolved
    ]
    if not engine.direct_reads:
        for r, keys in enumerate(entities):
            for col in columns:
                await _get_cell(engine, col, r, keys)
        return columns

    now = engine.clock.now_micros()
    encoded: dict[tuple[str, ...], tuple[list[str], list[int]]] = {}
    reads: list[ColumnRead] = []
    read_of: dict[tuple[str, int], int] = {}  # (fqn, version; -1 = window) -> read index
    planned: list[tuple[int, FeatureRuntime, list[int], int]] = []
    slow: list[tuple[int, int]] = []  # (row, column) read one by one through get()
    for c, (sel, target) in enumerate(resolved):
        if isinstance(target, ModelRuntime):
            slow.extend((r, c) for r in range(n))
            continue
        defn = target.defn
        enc = encoded.get(defn.keys)
        if enc is None:
            enc = encoded[defn.keys] = encode_entities(defn.keys, entities)
        ids, rows = enc
        col = columns[c]
        if len(rows) < n:  # entities without this feature's keys: its own error message
            ok = set(rows)
            for r in range(n):
                if r not in ok:
                    try:
                        encode_entity(defn.keys, entities[r], target.fqn)
                    except RaptorError as exc:
                        col.errors[r] = exc
        read: ColumnRead
        if defn.aggr:
            assert defn.window is not None
            key = (target.fqn, -1)
            read = WindowColumnRead(target.fqn, ids, defn.window)
        else:
            key = (target.fqn, sel.version)
            read = ValueColumnRead(target.fqn, ids, sel.version)
        i = read_of.get(key)
        if i is None:
            i = read_of[key] = len(reads)
            reads.append(read)
        planned.append((c, target, rows, i))
    got = await read_columns(engine.state, reads, now) if reads else []

    for c, rt, rows, i in planned:
        col = columns[c]
        defn = rt.defn
        sel = col.selector
        full = len(rows) == n  # rows[j] == j
        res = got[i]
        if defn.aggr:
            assert isinstance(res, list)
            fn = AggrFn.parse(sel.aggr) if sel.aggr else defn.aggr[0]
            values = aggregate(res, fn)
            if full:
                col.values[:] = values
                col.timestamps[:] = [now] * n
                col.fresh[:] = [True] * n
            else:
                for r, v in zip(rows, values, strict=True):
                    col.values[r], col.timestamps[r], col.fresh[r] = v, now, True
            continue
        assert isinstance(res, ValueColumn)
        values, stamps = res
        freshness = defn.freshness
        try:  # a TypeError (or None itself) when a cell has no value
            oldest: int | None = min(cast(list[int], stamps), default=None)
        except TypeError:
            oldest = None
        if full and oldest is not None and now - oldest <= freshness:
            # The common case, every cell has a fresh value: no per-cell work at all.
            col.values[:] = values
            col.timestamps[:] = stamps
            col.fresh[:] = [True] * n
            continue
        version = sel.version
        computed = rt.computed
        staleness = defn.staleness
        for r, v, ts in zip(rows, values, stamps, strict=True):
            if ts is not None:
                fresh = now - ts <= freshness
                if fresh or version:
                    col.values[r], col.timestamps[r], col.fresh[r] = v, ts, fresh
                    continue
            if computed:
                slow.append((r, c))
            elif ts is not None and (staleness == 0 or now - ts <= staleness):  # is_usable
                col.values[r], col.timestamps[r] = v, ts
    for r, c in sorted(slow):
        await _get_cell(engine, columns[c], r, entities[r])
    return columns


def _resolve(
    engine: Engine, selectors: Sequence[str | Selector], namespace: str
) -> list[tuple[Selector, FeatureRuntime | ModelRuntime]]:
    resolved: list[tuple[Selector, FeatureRuntime | ModelRuntime]] = []
    for s in selectors:
        sel = s if isinstance(s, Selector) else parse_selector(s, namespace)
        target = engine.descriptor(sel)
        if isinstance(target, FeatureRuntime):
            problem = check_dependency(sel, target.defn)
            if problem:
                raise SelectorError(problem)
        resolved.append((sel, target))
    return resolved


async def _get_cell(engine: Engine, col: BatchColumn, r: int, keys: Mapping[str, str]) -> None:
    """Cell ``r`` of ``col`` through ``engine.get`` (the one-by-one path)."""
    try:
        fv = await engine.get(col.selector, keys)
    except RaptorError as exc:
        col.errors[r] = exc
        return
    col.values[r] = fv.value
    col.timestamps[r] = None if fv.timestamp is None else to_micros(fv.timestamp)
    col.fresh[r] = fv.fresh


def encode_entities(
    names: tuple[str, ...], entities: Sequence[Mapping[str, str]]
) -> tuple[list[str], list[int]]:
    """The entity ids of the entities that have the keys ``names``, and their rows."""
    if len(names) == 1:
        # One key whose values are all plain ASCII letters and digits (the common case):
        # encode_entity would return each value as it is. Checked on all at once.
        try:
            values: list[str] = list(map(itemgetter(names[0]), entities))
            joined = "".join(values)
        except (KeyError, TypeError):  # a missing key, a value that is not a string
            joined = ""
        if joined.isascii() and joined.isalnum():
            return values, list(range(len(values)))
    ids: list[str] = []
    rows: list[int] = []
    for r, keys in enumerate(entities):
        try:
            ids.append(encode_entity(names, keys))
        except RaptorError:
            continue
        rows.append(r)
    return ids, rows


def aggregate(partials: list[Partial], fn: AggrFn) -> list[Any]:
    """``result(p, fn)`` of every partial (:func:`raptor.api.windows.result`), unrolled."""
    if fn is AggrFn.SUM:
        return [p[0] for p in partials]
    if fn is AggrFn.COUNT:
        return [p[1] for p in partials]
    if fn is AggrFn.MIN:
        return [p[2] if p[1] else None for p in partials]
    if fn is AggrFn.MAX:
        return [p[3] if p[1] else None for p in partials]
    return [p[0] / p[1] if p[1] else None for p in partials]
