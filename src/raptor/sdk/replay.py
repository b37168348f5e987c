"""Replay: a feature's values over its training data, exactly as production would serve them.

A :class:`ReplaySession` evaluates features at *points* — ``(keys, T)`` pairs — using only what
production would have seen by ``T``:

1. data-source features: their programs run over the data source's rows
   (:mod:`raptor.sdk.execution`); the writes form a :class:`~raptor.sdk.timeline.Timeline`;
   windowed features are read with the engine's bucket semantics, others with its
   value/version semantics (:mod:`raptor.sdk.timeline`);
2. sourceless (derived) features: their program runs at each point with an empty row,
   ``ctx.timestamp = T`` and ``ctx.get_feature`` answering point-in-time from the features it
   reads, which are evaluated first (literal dependencies in one vectorised pass, as the engine
   prefetches them; any other call on demand). A missing value is ``(None, None)``; a windowed
   read is stamped ``T``, as the engine does. Dependencies are ordered by the registry's graph
   and cycles rejected (:class:`~raptor.errors.DependencyCycleError`).

Assumption, stated once: replay takes every event to have reached production at its own event
time. Events that production receives after their window (or staleness) has passed are dropped
online; replay cannot know arrival times, so it counts them. Computed features are evaluated
fresh at each point (production may serve a cached value up to ``freshness`` old).

``Feature.replay()`` returns one row per event that produced a value (the value at that
event's time, ties included), sorted by time; ``replay(at=frame)`` answers at given points.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from raptor.api.names import Selector, parse_selector
from raptor.api.primitives import Primitive
from raptor.api.timeutil import from_micros
from raptor.api.windows import AggrFn
from raptor.engine.catalog import check_dependency
from raptor.engine.context import Context
from raptor.errors import NotFound, ProgramRuntimeError, RaptorError
from raptor.sdk.execution import Events, entity_strings, micros_to_datetimes, run_features
from raptor.sdk.progress import Progress
from raptor.sdk.rows import SourceFrame, event_micros, key_strings
from raptor.sdk.timeline import Ordering, Timeline, ValueIndex, WindowIndex, query_order

if TYPE_CHECKING:
    from raptor.sdk.features import Feature
    from raptor.sdk.registry import Registry

__all__ = ["Column", "Points", "ReplaySession", "to_series"]


@dataclass
class Points:
    """Where to evaluate: key strings per key name (None = missing) and times (µs).

    Entity strings and entity codes are computed once per key set / per event ordering and
    shared by every feature evaluated at these points."""

    keys: dict[str, np.ndarray]
    t: np.ndarray
    _cache: dict[Any, np.ndarray] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.t)

    def entities(self, names: Sequence[str]) -> np.ndarray:
        key = tuple(names)
        cached = self._cache.get(key)
        if cached is None:
            n = len(self.t)
            if any(k not in self.keys for k in names):
                cached = np.full(n, None, dtype=object)
            else:
                cached = entity_strings([self.keys[k] for k in names], n)
            self._cache[key] = cached
        return cached

    def order(self, tl: Timeline, names: Sequence[str]) -> np.ndarray:
        """The permutation sorting these points' search keys for ``tl`` (cached)."""
        key = ("perm", id(tl.ordering), tuple(names))
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = query_order(self.codes(tl, names), self.t)
        return cached

    def codes(self, tl: Timeline, names: Sequence[str]) -> np.ndarray:
        key = (id(tl.ordering), tuple(names))
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = tl.codes(self.entities(names))
        return cached

    @classmethod
    def from_frame(cls, frame: pd.DataFrame, names: Sequence[str], what: str) -> Points:
        """Points from a frame with a ``timestamp`` column and the key columns ``names``."""
        if "timestamp" not in frame.columns:
            raise ValueError(f"{what}: the frame needs a 'timestamp' column")
        missing = [k for k in names if k not in frame.columns]
        if missing:
            raise ValueError(f"{what}: the frame lacks key column(s) {', '.join(missing)}")
        micros, bad = event_micros(frame["timestamp"])
        if bad.any():
            raise ValueError(f"{what}: {int(bad.sum())} row(s) have no timestamp")
        keys = {k: np.asarray(key_strings(frame[k]), dtype=object) for k in names}
        return cls(keys, micros)


@dataclass
class Column:
    """Values at points: ``values`` (typed or object), ``present`` and stamps ``ts`` (µs)."""

    values: np.ndarray
    present: np.ndarray
    ts: np.ndarray
    primitive: Primitive
    stamped: bool = False
    """Windowed reads are stamped with the query time even without a value (as the engine)."""

    def python(self, i: int) -> tuple[Any, datetime | None]:
        """``(value, timestamp)`` at point ``i`` as ``ctx.get_feature`` returns it."""
        if not self.present[i]:
            return None, (from_micros(int(self.ts[i])) if self.stamped else None)
        v = self.values[i]
        return (v.item() if isinstance(v, np.generic) else v), from_micros(int(self.ts[i]))


def to_series(col: Column, name: str) -> pd.Series:
    """A typed, null-aware column (SPEC 8: missing values are null)."""
    values, present, prim = col.values, col.present, col.primitive
    every = bool(present.all())
    if prim is Primitive.INT and values.dtype.kind in "iu":
        if every:
            return pd.Series(values, name=name)
        return pd.Series(pd.array(np.where(present, values, 0), dtype="Int64"), name=name).where(
            present, pd.NA
        )
    if prim is Primitive.FLOAT:
        return pd.Series(np.where(present, values.astype("float64"), np.nan), name=name)
    if prim is Primitive.BOOL and values.dtype == bool:
        if every:
            return pd.Series(values, name=name)
        return pd.Series(pd.array(values, dtype="boolean"), name=name).where(present, pd.NA)
    if prim is Primitive.TIMESTAMP:
        vals = [v if p else None for v, p in zip(values.tolist(), present.tolist(), strict=True)]
        return pd.Series(pd.to_datetime(pd.Series(vals, dtype=object), utc=True), name=name)
    out = np.empty(len(values), dtype=object)
    out[:] = [v if p else None for v, p in zip(values.tolist(), present.tolist(), strict=True)]
    return pd.Series(out, name=name)


def _value_primitive(feature: Feature, fn: AggrFn | None) -> Primitive:
    if fn is AggrFn.COUNT:
        return Primitive.INT
    if fn is AggrFn.AVG:
        return Primitive.FLOAT
    return feature.primitive


class ReplaySession:
    """Replays features of one registry, sharing programs' outputs between them."""

    def __init__(self, registry: Registry, *, progress: bool | None = None) -> None:
        self.registry = registry
        self.progress = progress
        self._sources: dict[str, SourceFrame] = {}
        self._events: dict[str, Events] = {}
        self._timelines: dict[str, Timeline] = {}
        self._windows: dict[str, WindowIndex] = {}
        self._values: dict[str, ValueIndex] = {}
        self._orderings: list[tuple[tuple[str, tuple[str, ...]], Events, Ordering]] = []

    # -- building blocks ---------------------------------------------------------------------

    def feature(self, fqn: str) -> Feature:
        f = self.registry.features.get(fqn)
        if f is None:
            raise NotFound(f"feature {fqn} is not defined")
        return f

    def source(self, f: Feature) -> SourceFrame:
        ds = f.data_source
        assert ds is not None
        src = self._sources.get(ds.fqn)
        if src is None:
            src = self._sources[ds.fqn] = SourceFrame(ds.frame(), ds.timestamp, ds.fqn)
        return src

    def prepare(self, fqns: Sequence[str]) -> None:
        """Run the programs of the data-source features among ``fqns`` (and the features
        they read), one pass per data source."""
        order = self.registry.dependency_order(fqns)
        todo: dict[str, list[Feature]] = {}
        for fqn in order:
            f = self.feature(fqn)
            if f.data_source is not None and fqn not in self._events:
                todo.setdefault(f.data_source.fqn, []).append(f)
        for ds_fqn, group in todo.items():
            src = self.source(group[0])
            names = ", ".join(f.name for f in group)
            with Progress(f"replay {names}", src.n, self.progress) as bar:
                self._events.update(run_features(src, group, bar))
            del ds_fqn

    def events(self, fqn: str) -> Events:
        if fqn not in self._events:
            self.prepare([fqn])
        return self._events[fqn]

    def timeline(self, fqn: str) -> Timeline:
        tl = self._timelines.get(fqn)
        if tl is None:
            ev = self.events(fqn)
            f = self.feature(fqn)
            tl = Timeline(ev.entities(f.keys), ev.t, ev.values, self._shared_ordering(f, ev))
            if not ev.key_overridden:
                assert f.data_source is not None
                self._orderings.append(((f.data_source.fqn, f.keys), ev, tl.ordering))
            self._timelines[fqn] = tl
        return tl

    def _shared_ordering(self, f: Feature, ev: Events) -> Ordering | None:
        """The ordering of another feature fed by the same rows with the same keys and times."""
        if ev.key_overridden or f.data_source is None:
            return None
        for key, other, ordering in self._orderings:
            if (
                key == (f.data_source.fqn, f.keys)
                and len(other) == len(ev)
                and np.array_equal(other.rows, ev.rows)
                and np.array_equal(other.t, ev.t)
            ):
                return ordering
        return None

    def window(self, fqn: str) -> WindowIndex:
        w = self._windows.get(fqn)
        if w is None:
            d = self.feature(fqn).definition
            assert d.window is not None
            w = self._windows[fqn] = WindowIndex(self.timeline(fqn), d.window, d.aggr)
        return w

    def value_index(self, fqn: str) -> ValueIndex:
        v = self._values.get(fqn)
        if v is None:
            d = self.feature(fqn).definition
            v = ValueIndex(self.timeline(fqn), d.staleness, d.keep_previous, d.primitive.is_list)
            self._values[fqn] = v
        return v

    # -- evaluation --------------------------------------------------------------------------

    def lookup(self, sel: Selector, points: Points) -> Column:
        """The value of ``sel`` at every point."""
        f = self.feature(sel.fqn)
        problem = check_dependency(sel, f.definition)
        if problem:
            raise ValueError(problem)
        d = f.definition
        if f.data_source is None:
            if sel.version:
                raise ValueError(
                    f"{sel}: previous versions of a computed feature depend on when it was "
                    "read; replay cannot give them"
                )
            return self.sourceless(f, points)
        tl = self.timeline(f.fqn)
        ent = points.codes(tl, d.keys)
        perm = points.order(tl, d.keys) if len(points) >= 4096 else None
        if d.aggr:
            fn = AggrFn.parse(sel.aggr) if sel.aggr else d.aggr[0]
            values, present = self.window(f.fqn).at(ent, points.t, perm)[fn]
            return Column(values, present, points.t, _value_primitive(f, fn), stamped=True)
        values, ts, present = self.value_index(f.fqn).at(ent, points.t, sel.version, perm)
        return Column(values, present, ts, d.primitive)

    def sourceless(self, f: Feature, points: Points) -> Column:
        """Run a sourceless feature's program at every point (row ``{}``, ctx at ``T``)."""
        self.registry.dependency_order([f.fqn])  # raises on a cycle
        program = f.program
        ns = f.namespace
        pre: dict[Selector, Column] = {}
        for dep in program.dependencies:
            col = self._safe_lookup(dep, points)
            if col is not None:
                pre[dep] = col
        names = list(points.keys)
        key_cols = [points.keys[k].tolist() for k in names]
        times = micros_to_datetimes(points.t)
        values: list[Any] = []
        present: list[bool] = []
        for i, when in enumerate(times):
            keys = {k: col[i] for k, col in zip(names, key_cols, strict=True) if col[i] is not None}
            getter = _Getter(self, ns, keys, int(points.t[i]), i, pre)
            ctx = Context(f.fqn, ns, keys, when, getter, _no_prediction)
            try:
                res = program.run({}, ctx)
            except RaptorError as exc:
                raise ProgramRuntimeError(
                    f"replay of {f.fqn} at {when.isoformat()} {keys}: {exc}"
                ) from exc
            values.append(res.value)
            present.append(res.value is not None)
        arr = np.empty(len(values), dtype=object)
        arr[:] = values
        dtypes = {Primitive.INT: "int64", Primitive.FLOAT: "float64", Primitive.BOOL: "bool"}
        if f.primitive in dtypes and all(present):
            arr = np.asarray(values, dtype=np.dtype(dtypes[f.primitive]))
        return Column(arr, np.asarray(present, dtype=bool), points.t, f.primitive)

    def _safe_lookup(self, sel: Selector, points: Points) -> Column | None:
        """Like the engine's prefetch: anything that would be an error reads as no value."""
        if sel.fqn not in self.registry.features:
            return None
        try:
            return self.lookup(sel, points)
        except (ValueError, RaptorError):
            return None

    # -- frames ------------------------------------------------------------------------------

    def event_points(self, f: Feature) -> tuple[Points, Events, np.ndarray]:
        """Points at the events of ``f`` (the last write of each source row), time-ordered;
        with the events and the indexes of those writes."""
        ev = self.events(f.fqn)
        if len(ev) and f.primitive.is_list and not f.definition.aggr:
            last = np.ones(len(ev), dtype=bool)
            last[:-1] = ev.rows[1:] != ev.rows[:-1]
            idx = np.flatnonzero(last)
        else:
            idx = np.arange(len(ev))
        idx = idx[np.argsort(ev.t[idx], kind="stable")]
        points = Points({k: v[idx] for k, v in ev.keys.items()}, ev.t[idx])
        tl = self.timeline(f.fqn)
        points._cache[(id(tl.ordering), tuple(f.keys))] = tl.ordering.event_codes[idx]
        return points, ev, idx

    def points_of(self, f: Feature) -> tuple[Points, pd.DataFrame | None]:
        """Where ``replay()`` evaluates ``f``: its events, or its marker frame."""
        if f.data_source is not None:
            return self.event_points(f)[0], None
        if f.markers is None:
            raise ValueError(
                f"sourceless feature {f.fqn} has no marker frame: pass sourceless_markers_df= "
                "to @feature, or replay(at=frame) with 'timestamp' and key columns"
            )
        return Points.from_frame(f.markers, f.keys, f"{f.fqn} markers"), f.markers

    def replay(self, fqn: str, at: pd.DataFrame | None = None) -> pd.DataFrame:
        f = self.feature(fqn)
        self.prepare([fqn])
        if at is not None:
            points = Points.from_frame(at, f.keys, f"replay({f.name}, at=...)")
            base = at[["timestamp", *f.keys]].reset_index(drop=True)
            base["timestamp"] = pd.Series(points.t.astype("datetime64[us]")).dt.tz_localize("UTC")
            return self._with_values(f, points, base)
        if f.data_source is None:
            points, markers = self.points_of(f)
            assert markers is not None
            order = np.argsort(points.t, kind="stable")
            points = Points({k: v[order] for k, v in points.keys.items()}, points.t[order])
            base = markers[list(f.keys)].iloc[order].reset_index(drop=True)
        else:
            points, ev, idx = self.event_points(f)
            base = pd.DataFrame(
                {k: self._key_column(f, ev, k, idx) for k in f.keys}, index=range(len(points))
            )
        base.insert(
            0, "timestamp", pd.Series(points.t.astype("datetime64[us]")).dt.tz_localize("UTC")
        )
        return self._with_values(f, points, base)

    def _key_column(self, f: Feature, ev: Events, key: str, idx: np.ndarray) -> Any:
        """Key values as strings, or the source column's own ints when keys came from it."""
        strings = ev.keys[key][idx]
        if ev.key_overridden or f.data_source is None:
            return strings
        col = self.source(f).frame[key]
        numpy_int = col.dtype.kind in "iu" and not isinstance(
            col.dtype, pd.api.extensions.ExtensionDtype
        )
        if numpy_int or isinstance(col.dtype, pd.StringDtype):
            return col.array.take(ev.rows[idx])  # the frame's own values (same strings)
        return strings

    def _with_values(self, f: Feature, points: Points, base: pd.DataFrame) -> pd.DataFrame:
        sel = parse_selector(f.fqn)
        d = f.definition
        cols: dict[str, pd.Series] = {}
        if d.aggr:
            for fn in d.aggr:
                s = Selector(sel.namespace, sel.name, aggr=fn.value)
                cols[f"{f.fqn}+{fn.value}"] = to_series(self.lookup(s, points), "")
        else:
            cols[str(f.fqn)] = to_series(self.lookup(sel, points), "")
            if d.keep_previous is not None and f.data_source is not None:
                for i in range(1, d.keep_previous.versions + 1):
                    s = Selector(sel.namespace, sel.name, version=i)
                    cols[f"{f.fqn}@-{i}"] = to_series(self.lookup(s, points), "")
        for name, series in cols.items():
            base[name] = series.to_numpy() if series.dtype == object else series.array
        return base


class _Getter:
    """``ctx.get_feature`` during a sourceless replay (see :class:`ReplaySession`)."""

    __slots__ = ("at", "i", "keys", "namespace", "pre", "session")

    def __init__(
        self,
        session: ReplaySession,
        namespace: str,
        keys: Mapping[str, str],
        at: int,
        i: int,
        pre: Mapping[Selector, Column],
    ) -> None:
        self.session = session
        self.namespace = namespace
        self.keys = keys
        self.at = at
        self.i = i
        self.pre = pre

    def __call__(
        self, selector: str, keys: Mapping[str, str] | None
    ) -> tuple[Any, datetime | None]:
        try:
            sel = parse_selector(selector, self.namespace)
        except RaptorError:
            return None, None
        if keys is None or keys is self.keys or dict(keys) == dict(self.keys):
            col = self.pre.get(sel)
            if col is not None:
                return col.python(self.i)
            keys = self.keys
        point = Points(
            {k: np.asarray([v], dtype=object) for k, v in keys.items()},
            np.asarray([self.at], dtype="int64"),
        )
        found = self.session._safe_lookup(sel, point)
        return (None, None) if found is None else found.python(0)


def _no_prediction(selector: str, keys: Mapping[str, str] | None) -> tuple[Any, datetime | None]:
    return None, None
