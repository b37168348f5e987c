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
* when both hold (and the feature is not a list), one row dict is reused too — a program that
  reads only literal fields can neither keep nor change it — and the compiled function is
  called in a tight loop over the rows that have keys; a result that is a scalar of the
  primitive's own type is taken inline, anything else (``None``, a tuple return form, a value
  to check or coerce) goes through the program's own checks, so results and errors are those of
  :meth:`Program.run <raptor.engine.context.Program.run>`;
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

from raptor.api.primitives import INT64_MAX, INT64_MIN, Primitive
from raptor.api.timeutil import to_micros
from raptor.engine.context import Context, ProgramResult
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
        has_keys = np.ones(src.n, dtype=bool)
        for kl in self.key_lists:
            has_keys &= np.asarray(kl, dtype=object) != None  # noqa: E711 - elementwise
        self.has_keys = has_keys


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
        ok_mask = valid[start:stop]
        for p in plans:
            if columns is not None and _fast_plan(p, columns):
                _run_fast(p, columns, src, start, micros, ok_mask, times)
            else:
                _run_plan(p, src.rows(columns, start, stop), start, micros, ok, times)
        if progress is not None:
            progress.update(stop - start)


def _fast_plan(p: _Plan, columns: list[str] | None) -> bool:
    """True when :func:`_run_fast` can run ``p``: one reused row dict (the program reads only
    literal fields, so the row cannot escape), one reused ``ctx``, one write per row."""
    return columns is not None and p.fields is not None and p.attrs is not None and not p.is_list


def _run_fast(
    p: _Plan,
    columns: list[str],
    src: SourceFrame,
    start: int,
    micros: list[int],
    ok: np.ndarray,
    times: list[datetime] | None,
) -> None:
    """:func:`_run_plan` for a :func:`_fast_plan`: the compiled function is called directly and
    its result normalized exactly as :meth:`Program.run` does (the scalar of the primitive's
    own type inline; anything else through the program's own checks)."""
    program = p.program
    func = program._func
    fast: Any = program._fast_type  # Any: ``type(out) is fast`` must not narrow ``out``
    int_fast = fast is int
    raised = program._raised
    names = p.names
    stop = start + len(micros)
    key_lists = [kl[start:stop] for kl in p.key_lists]
    has_keys = p.has_keys[start:stop]
    p.dropped += int(np.count_nonzero(ok & ~has_keys))
    idx: list[int] = np.flatnonzero(ok & has_keys).tolist()
    cols = [src.values(c)[start:stop] for c in columns]
    row: dict[str, Any] = dict.fromkeys(columns)
    ctx = Context(p.fqn, p.namespace, {}, _EPOCH, _no_lookup, _no_lookup)
    attrs = p.attrs or frozenset()
    needs_keys = not attrs <= {"timestamp", "fqn", "namespace"}
    append_t, append_v, append_r = p.t.append, p.values.append, p.rows.append
    key_out = [p.keys[n] for n in names]
    single = len(names) == 1
    kl0 = key_lists[0] if single else []
    append_k0 = key_out[0].append if single else None
    col0 = cols[0] if len(cols) == 1 else None
    name0 = columns[0] if len(cols) == 1 else ""
    i = 0
    try:
        for i in idx:
            if col0 is not None:
                row[name0] = col0[i]
            else:
                for name, col in zip(columns, cols, strict=True):
                    row[name] = col[i]
            if times is not None:
                ctx.timestamp = times[i]
            kv: list[Any] | None = None
            if needs_keys or not single:
                kv = [kl[i] for kl in key_lists]
                ctx.keys = dict(zip(names, kv, strict=True))
            try:
                out: Any = func(row, ctx)
            except RaptorError:
                raise
            except (Exception, SystemExit) as exc:
                raise raised(exc) from exc
            if type(out) is fast and (not int_fast or INT64_MIN <= out <= INT64_MAX):
                if append_k0 is not None:
                    append_k0(kl0[i])
                else:
                    assert kv is not None
                    for kcol, k in zip(key_out, kv, strict=True):
                        kcol.append(k)
                append_t(micros[i])
                append_v(out)
                append_r(start + i)
                continue
            if out is None:
                continue
            res = (
                program._unpack(out)
                if isinstance(out, tuple)
                else ProgramResult(program._value(out, out))
            )
            value = res.value
            if value is None:
                continue
            if kv is None:
                kv = [kl[i] for kl in key_lists]
            t = micros[i] if res.timestamp is None else to_micros(res.timestamp)
            if res.keys is not None:
                p.overridden = True
                merged = {**dict(zip(names, kv, strict=True)), **res.keys}
                kv = [merged[n] for n in names]
            for kcol, k in zip(key_out, kv, strict=True):
                kcol.append(k)
            append_t(t)
            append_v(value)
            append_r(start + i)
    except RaptorError as exc:
        raise ProgramRuntimeError(f"replay of {p.fqn}, training row {start + i}: {exc}") from exc


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
