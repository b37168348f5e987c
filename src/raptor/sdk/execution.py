"""Running feature programs over training rows, as ingestion does (:mod:`raptor.engine.ingest`).

For each row of a data source and each feature fed by it: read the keys from the row (a row
without them is what production rejects: dropped here and counted), build the ``ctx`` with the
event time, run the compiled production program, and turn its result into writes — ``None``
is no write; ``(value, keys[, timestamp])`` overrides keys and time; a list returned for a list
feature appends each element. That is :func:`raptor.engine.ingest.prepare_rows`, row for row.

Speed without changing results (the analysis is in :mod:`raptor.sdk.source`):

* a program that is exactly ``return row["f"]`` takes the column, checked like
  :meth:`Primitive.check` (only for dtypes where that check is a no-op; else the program runs);
* rows hold only the fields the program reads, when it reads only literal fields;
* ``ctx`` is one reused object when the program never lets it escape, and ``ctx.timestamp``
  is built only for programs that read it;
* rows are built and run in chunks (bounded memory), with a progress bar on long replays.

A program error stops the replay with the row index and the program's own message: in a
notebook a bug should surface, not silently drop data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pandas as pd

from raptor.api.primitives import Primitive
from raptor.api.timeutil import to_micros
from raptor.engine.context import Context
from raptor.errors import ProgramRuntimeError, RaptorError
from raptor.sdk.progress import Progress
from raptor.sdk.rows import SourceFrame
from raptor.sdk.source import ctx_attributes, projection, row_fields

if TYPE_CHECKING:
    from raptor.sdk.features import Feature

__all__ = ["CHUNK", "Events", "entity_strings", "micros_to_datetimes", "run_features"]

CHUNK = 65_536
SEP = "\x1f"
"""Joins the key strings of a multi-key entity (never part of a key in practice)."""


@dataclass
class Events:
    """A feature's writes: per write its key strings, event time, value and source row."""

    keys: dict[str, np.ndarray]
    t: np.ndarray
    values: np.ndarray
    rows: np.ndarray
    key_overridden: bool = False

    def __len__(self) -> int:
        return len(self.t)

    def entities(self, names: Sequence[str]) -> np.ndarray:
        return entity_strings([self.keys[n] for n in names], len(self.t))


def entity_strings(columns: Sequence[np.ndarray | Sequence[Any]], n: int) -> np.ndarray:
    """One string per row identifying the entity (None when a key is missing)."""
    if not columns:
        return np.full(n, "", dtype=object)
    if len(columns) == 1:
        return np.asarray(columns[0], dtype=object)
    out = [
        None if any(v is None for v in vals) else SEP.join(vals)
        for vals in zip(*columns, strict=True)
    ]
    return np.asarray(out, dtype=object)


def micros_to_datetimes(micros: np.ndarray) -> list[datetime]:
    """Aware UTC datetimes (``tzinfo is datetime.UTC``) of epoch microseconds, vectorised."""
    if len(micros) == 0:
        return []
    index = pd.DatetimeIndex(micros.astype("datetime64[us]")).tz_localize(UTC)
    return list(index.to_pydatetime())


def _typed(values: list[Any], primitive: Primitive) -> np.ndarray:
    if primitive is Primitive.INT:
        try:
            return np.asarray(values, dtype="int64")
        except OverflowError:  # pragma: no cover - values are checked to fit in 64 bits
            return np.asarray(values, dtype=object)
    if primitive is Primitive.FLOAT:
        return np.asarray(values, dtype="float64")
    if primitive is Primitive.BOOL:
        return np.asarray(values, dtype=bool)
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


_FAST_KINDS = {Primitive.INT: "iu", Primitive.FLOAT: "iuf", Primitive.BOOL: "b"}


def _projected(
    src: SourceFrame, feature: Feature, field: str
) -> tuple[np.ndarray | list[Any], np.ndarray] | None:
    """``(values, present)`` of a ``return row[field]`` program when the column's dtype makes
    ``Primitive.check`` a no-op (else None: run the program)."""
    if not src.has(field):
        return None
    series = src.frame[field]
    prim = feature.primitive
    dtype = series.dtype
    ext = isinstance(dtype, pd.api.extensions.ExtensionDtype)
    kinds = _FAST_KINDS.get(prim)
    if kinds is not None and not ext and dtype.kind in kinds:
        arr = series.to_numpy()
        if dtype.kind == "u" and len(arr) and int(arr.max()) > 2**63 - 1:
            return None
        present = ~np.isnan(arr) if dtype.kind == "f" else np.ones(len(arr), dtype=bool)
        if prim is Primitive.FLOAT:
            arr = arr.astype("float64")
        return arr, present
    if prim is Primitive.STRING:
        values = src.values(field)
        if all(v is None or type(v) is str for v in values):
            present = np.fromiter((v is not None for v in values), dtype=bool, count=len(values))
            return values, present
    return None


class _Plan:
    """One feature prepared for the per-row loop."""

    def __init__(self, feature: Feature, src: SourceFrame) -> None:
        self.feature = feature
        self.program = feature.program
        self.fqn = feature.fqn
        self.namespace = feature.namespace
        self.names = feature.keys
        self.key_lists = [src.keys(k) for k in self.names]
        tree = feature.source.tree
        row, ctx = feature.source.params
        self.fields = row_fields(tree, row)
        self.attrs = ctx_attributes(tree, ctx)
        self.needs_time = self.attrs is None or "timestamp" in self.attrs
        self.is_list = feature.primitive.is_list and not feature.definition.aggr
        self.keys: dict[str, list[Any]] = {k: [] for k in self.names}
        self.t: list[int] = []
        self.values: list[Any] = []
        self.rows: list[int] = []
        self.overridden = False
        self.dropped = 0


def run_features(
    src: SourceFrame, features: Sequence[Feature], progress: Progress | None = None
) -> dict[str, Events]:
    """Every write that ingesting ``src``'s rows would make, per feature FQN."""
    out: dict[str, Events] = {}
    slow: list[_Plan] = []
    for f in features:
        missing = [k for k in f.keys if not src.has(k)]
        if missing:
            raise ValueError(
                f"feature {f.fqn}: the training data of {src.label} has no key column(s) "
                f"{', '.join(missing)}"
            )
        row_param = f.source.params[0]
        field = projection(f.source.tree, row_param)
        fast = _projected(src, f, field) if field is not None else None
        if fast is None:
            slow.append(_Plan(f, src))
            continue
        values, present = fast
        keys = {k: np.asarray(src.keys(k), dtype=object) for k in f.keys}
        ok = src.valid & present
        for col in keys.values():
            ok &= col != None  # noqa: E711 - elementwise
        idx = np.flatnonzero(ok)
        arr = (
            values[idx]
            if isinstance(values, np.ndarray)
            else _typed([values[i] for i in idx.tolist()], f.primitive)
        )
        out[f.fqn] = Events({k: v[idx] for k, v in keys.items()}, src.micros[idx], arr, idx)
    if slow:
        _run_slow(src, slow, progress)
        for p in slow:
            keys = {k: np.asarray(v, dtype=object) for k, v in p.keys.items()}
            typed = _typed(
                p.values, p.feature.primitive.scalar if p.is_list else p.feature.primitive
            )
            out[p.fqn] = Events(
                keys,
                np.asarray(p.t, dtype="int64"),
                typed,
                np.asarray(p.rows, dtype="int64"),
                p.overridden,
            )
            if p.dropped:
                src.dropped[f"{p.fqn}: missing key"] = p.dropped
    return out


def _run_slow(src: SourceFrame, plans: list[_Plan], progress: Progress | None) -> None:
    fields: set[str] | None = set()
    for p in plans:
        if p.fields is None or fields is None:
            fields = None
        else:
            fields |= p.fields
    columns = src.row_columns(None if fields is None else frozenset(fields))
    need_time = any(p.needs_time for p in plans)
    valid = src.valid
    for start in range(0, src.n, CHUNK):
        stop = min(start + CHUNK, src.n)
        times: list[datetime] | None = None
        if need_time:
            times = micros_to_datetimes(src.micros[start:stop])
        micros = src.micros[start:stop].tolist()
        ok = valid[start:stop].tolist()
        for p in plans:
            _run_plan(p, src.rows(columns, start, stop), start, micros, ok, times)
        if progress is not None:
            progress.update(stop - start)


def _run_plan(
    p: _Plan,
    rows: Any,
    start: int,
    micros: list[int],
    ok: list[bool],
    times: list[datetime] | None,
) -> None:
    run = p.program.run
    names = p.names
    key_lists = [kl[start : start + len(micros)] for kl in p.key_lists]
    shared: Context | None = None
    if p.attrs is not None:
        shared = Context(p.fqn, p.namespace, {}, _EPOCH, _no_lookup, _no_lookup)
    append_t, append_v, append_r = p.t.append, p.values.append, p.rows.append
    key_out = [p.keys[n] for n in names]
    for i, row in enumerate(rows):
        if not ok[i]:
            continue
        kv = [kl[i] for kl in key_lists]
        if None in kv:
            p.dropped += 1
            continue
        keys = dict(zip(names, cast("list[str]", kv), strict=True))
        when = times[i] if times is not None else _EPOCH
        if shared is not None:
            shared.keys = keys
            shared.timestamp = when
            ctx = shared
        else:
            ctx = Context(p.fqn, p.namespace, keys, when, _no_lookup, _no_lookup)
        try:
            res = run(row, ctx)
        except RaptorError as exc:
            raise ProgramRuntimeError(
                f"replay of {p.fqn}, training row {start + i}: {exc}"
            ) from exc
        value = res.value
        if value is None:
            continue
        t = micros[i] if res.timestamp is None else to_micros(res.timestamp)
        if res.keys is not None:
            p.overridden = True
            merged = {**keys, **res.keys}
            kv = [merged[n] for n in names]
        if p.is_list:
            for v in value:
                for col, k in zip(key_out, kv, strict=True):
                    col.append(k)
                append_t(t)
                append_v(v)
                append_r(start + i)
        else:
            for col, k in zip(key_out, kv, strict=True):
                col.append(k)
            append_t(t)
            append_v(value)
            append_r(start + i)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _no_lookup(selector: str, keys: Mapping[str, str] | None) -> tuple[Any, datetime | None]:
    from raptor.errors import InvalidArgument

    raise InvalidArgument(
        f"ctx.get_feature({selector!r}) is not available while ingesting rows; "
        "use a sourceless feature to combine features"
    )


Getter = Callable[[str, Mapping[str, str] | None], tuple[Any, datetime | None]]
