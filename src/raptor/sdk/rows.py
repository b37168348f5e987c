"""Training frames → the rows production programs see (SPEC 4.1: "same in training and production").

In production a row is a decoded JSON object, flattened by
:func:`raptor.engine.ingest.flatten_row`; the event time is the ``timestampField`` parsed by
:func:`~raptor.api.timeutil.parse_timestamp`; keys are read from the row and stringified by
:func:`~raptor.api.names.require_keys`. :class:`SourceFrame` gives replay the same rows from a
DataFrame, column by column (vectorised), so a program cannot tell replay from production:

* values are plain Python (numpy scalars → ``int``/``float``/``bool``), missing values
  (NaN, NaT, NA, None) are ``None`` (JSON ``null``);
* datetimes become RFC 3339 strings (``2024-05-01T12:00:00.000000Z``), as JSON carries them;
* nested objects (dict values) are flattened exactly by ``flatten_row``; dotted columns from
  ``pd.json_normalize`` (``a.b``) are also nested back under ``a``, as the JSON row had them;
* float key columns holding only whole numbers (an int column that got a NaN) give ``"12"``,
  not ``"12.0"``;
* the key and timestamp fields stay in the row.

Rows whose timestamp or keys are missing are what production rejects (dead letter / 4xx): they
are dropped from replay and counted in :attr:`SourceFrame.dropped`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from typing import Any, cast

import numpy as np
import pandas as pd

from raptor.api.timeutil import format_timestamp
from raptor.engine.ingest import flatten_row

__all__ = ["SourceFrame", "event_micros", "key_strings", "py_values"]


def _is_missing(v: Any) -> bool:
    if v is None or v is pd.NaT or v is pd.NA:
        return True
    return isinstance(v, float) and math.isnan(v)


def _json_value(v: Any) -> Any:
    """One object-column value as JSON would carry it."""
    if _is_missing(v):
        return None
    if isinstance(v, str | bool | int | float):
        return v
    if isinstance(v, np.generic):
        item = v.item()
        return None if _is_missing(item) else _json_value(item)
    if isinstance(v, datetime):
        return format_timestamp(v)
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, Mapping):
        return {str(k): _json_value(x) for k, x in v.items()}
    if isinstance(v, list | tuple | np.ndarray):
        return [_json_value(x) for x in v]
    return v


def _format_datetimes(micros: np.ndarray, missing: np.ndarray) -> list[Any]:
    text = np.datetime_as_string(micros.astype("datetime64[us]"), unit="us")
    out: list[Any] = [s + "Z" for s in text.tolist()]
    if missing.any():
        for i in np.flatnonzero(missing).tolist():
            out[i] = None
    return out


def _datetime_micros(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(micros, missing)`` of a datetime64 series (naive = UTC)."""
    missing = series.isna().to_numpy()
    if getattr(series.dt, "tz", None) is not None:
        series = series.dt.tz_convert("UTC").dt.tz_localize(None)
    values = series.to_numpy(dtype="datetime64[us]").view("int64").copy()
    values[missing] = 0
    return values, missing


def py_values(series: pd.Series) -> list[Any]:
    """The column's values as production rows hold them (see the module docstring)."""
    kind = series.dtype.kind
    if kind in "biu" and not isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        return list(series.to_numpy().tolist())
    if kind == "f" and not isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        arr = series.to_numpy()
        out: list[Any] = arr.tolist()
        nans = np.isnan(arr)
        if nans.any():
            for i in np.flatnonzero(nans).tolist():
                out[i] = None
        return out
    if kind == "M":
        micros, missing = _datetime_micros(series)
        return _format_datetimes(micros, missing)
    if kind == "m":
        secs = series.dt.total_seconds().to_numpy()
        return [None if math.isnan(x) else x for x in secs.tolist()]
    if isinstance(series.dtype, pd.StringDtype):
        return list(cast(Any, series).to_numpy(dtype=object, na_value=None).tolist())
    values = series.to_numpy(dtype=object).tolist()
    if all(type(v) is str for v in values):
        return values
    return [_json_value(v) for v in values]


def key_strings(series: pd.Series) -> list[str | None]:
    """A key column as ``require_keys`` would stringify it (None where missing)."""
    kind = series.dtype.kind
    if kind == "f" and not isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        arr = series.to_numpy()
        finite = arr[~np.isnan(arr)]
        if (
            finite.size
            and bool(np.all(finite == np.floor(finite)))
            and np.abs(finite).max() < 2**63
        ):
            return [None if math.isnan(x) else str(int(x)) for x in arr.tolist()]
    if kind in "iu" and not isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        return list(series.to_numpy().astype(str).astype(object).tolist())
    return [None if v is None else (v if isinstance(v, str) else str(v)) for v in py_values(series)]


def event_micros(series: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """``(micros, missing)``: the event time of each row, as ``parse_timestamp`` reads it."""
    kind = series.dtype.kind
    if kind == "M":
        return _datetime_micros(series)
    if kind in "iuf" and not isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
        arr = series.to_numpy().astype("float64")
        missing = np.isnan(arr)
        secs = np.where(np.abs(arr) > 1e11, arr / 1000, arr)
        micros = np.round(np.where(missing, 0, secs) * 1_000_000).astype("int64")
        return micros, missing
    parsed = pd.to_datetime(series, utc=True, format="ISO8601", errors="coerce")
    return _datetime_micros(parsed)


class SourceFrame:
    """A data source's training frame, prepared once for every feature replayed on it."""

    def __init__(self, frame: pd.DataFrame, timestamp: str | None, label: str) -> None:
        if timestamp is None:
            raise ValueError(
                f"data source {label} has no timestamp field; replay needs event times"
            )
        if timestamp not in frame.columns:
            raise ValueError(
                f"data source {label}: the training data has no {timestamp!r} column "
                f"(columns: {', '.join(map(str, frame.columns))})"
            )
        self.frame = frame
        self.label = label
        self.n = len(frame)
        self.columns = [str(c) for c in frame.columns]
        self.micros, missing = event_micros(frame[timestamp])
        self.valid = ~missing
        self.dropped: dict[str, int] = {}
        if missing.any():
            self.dropped[f"missing timestamp {timestamp!r}"] = int(missing.sum())
        self._values: dict[str, list[Any]] = {}
        self._keys: dict[str, list[str | None]] = {}
        self._nested = self._find_nested()

    def _find_nested(self) -> bool:
        """True when rows need ``flatten_row``: dict values, or dotted columns to re-nest."""
        cols = set(self.columns)
        if any("." in c and c.split(".")[0] not in cols for c in self.columns):
            return True
        for c in self.columns:
            column = self.frame[c]
            if column.dtype == object and any(isinstance(v, Mapping) for v in column.tolist()):
                return True
        return False

    def values(self, column: str) -> list[Any]:
        cached = self._values.get(column)
        if cached is None:
            cached = self._values[column] = py_values(self.frame[column])
        return cached

    def keys(self, column: str) -> list[str | None]:
        cached = self._keys.get(column)
        if cached is None:
            cached = self._keys[column] = key_strings(self.frame[column])
        return cached

    def has(self, column: str) -> bool:
        return column in self.frame.columns

    def row_columns(self, fields: frozenset[str] | None) -> list[str] | None:
        """The columns a row needs for a program reading ``fields`` (None: whole rows)."""
        if fields is None or self._nested:
            return None
        return [f for f in fields if f in self.frame.columns]

    def rows(
        self, columns: Sequence[str] | None, start: int, stop: int
    ) -> Iterator[dict[str, Any]]:
        """Rows ``start..stop`` with ``columns`` (None: all, flattened as in production)."""
        names = self.columns if columns is None else list(columns)
        cols = [self.values(c)[start:stop] for c in names]
        if columns is None and self._nested:
            for vals in zip(*cols, strict=True):
                yield flatten_row(_nest(dict(zip(names, vals, strict=True))))
            return
        if not names:
            for _ in range(stop - start):
                yield {}
            return
        for vals in zip(*cols, strict=True):
            yield dict(zip(names, vals, strict=True))


def _nest(row: dict[str, Any]) -> dict[str, Any]:
    """Put dotted fields (``a.b``) back under their parent (``a: {b: ...}``) when the row has
    no ``a`` field of its own, as the JSON object was before ``json_normalize``."""
    dotted = [k for k in row if "." in k]
    if not dotted:
        return row
    out = {k: v for k, v in row.items() if "." not in k or k.split(".")[0] in row}
    for key in dotted:
        parts = key.split(".")
        if parts[0] in row:
            continue
        node = out
        for p in parts[:-1]:
            child = node.get(p)
            if not isinstance(child, dict):
                child = node[p] = {}
            node = child
        node[parts[-1]] = row[key]
    return out
