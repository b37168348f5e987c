"""Training sets: the point-in-time-correct frame of a model's features and labels (SPEC 4.7).

The **spine** is the key feature's events — one row per event that produced a value (or per
marker row when the key feature is sourceless), in time order, none dropped. Every feature and
label is then evaluated *at* each spine row's ``(keys, T)`` by :class:`ReplaySession.lookup`:

* a windowed feature gives its window value at exactly ``T`` (buckets of SPEC 4.3 — not the
  value at its last event, which would keep buckets that have since left the window);
* any other feature gives its latest value with ``T - staleness <= ts <= T`` — a backward-only
  as-of join with the staleness as tolerance (``merge_asof(direction="backward")``), computed
  by binary search over the feature's sorted events, per entity, vectorised;
* a sourceless feature runs its program at ``T`` on the values of what it reads at ``T``.

Nothing after ``T`` is ever used, so a label can only be the label *known at* ``T``; upstream's
``nearest`` join would pull in the future. Keys other than the key feature's (multi-key
models) are read from the key feature's source row. Missing values are null.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from raptor.api.names import parse_selector
from raptor.api.timeutil import parse_timestamp, to_micros
from raptor.sdk.replay import Points, ReplaySession, to_series

if TYPE_CHECKING:
    from raptor.sdk.models import Model

__all__ = ["features_and_labels"]


def _bound(value: datetime | str | None, what: str) -> int | None:
    if value is None:
        return None
    try:
        return int(to_micros(parse_timestamp(value)))
    except ValueError as exc:
        raise ValueError(f"{what}: {exc}") from None


def features_and_labels(
    model: Model,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    *,
    progress: bool | None = None,
) -> pd.DataFrame:
    """The training frame of ``model`` with ``since <= timestamp < until`` (see the module
    docstring); columns ``timestamp``, the model's keys, then each selector as given."""
    lo, hi = _bound(since, "since"), _bound(until, "until")
    session = ReplaySession(model.registry, progress=progress)
    d = model.definition
    ns = d.namespace
    named = [
        (text, parse_selector(text, ns)) for text in (*model.input_features, *model.input_labels)
    ]
    session.prepare([d.key_feature.fqn, *(s.fqn for _, s in named)])
    key_f = session.feature(d.key_feature.fqn)
    keys: dict[str, np.ndarray] = {}
    shown: dict[str, Any] = {}
    if key_f.data_source is not None:
        points, ev, idx = session.event_points(key_f)
        src = session.source(key_f)
        rows = ev.rows[idx]
        for k in d.keys:
            if k in ev.keys:
                keys[k] = points.keys[k]
                shown[k] = session._key_column(key_f, ev, k, idx)
            elif src.has(k):
                keys[k] = np.asarray(src.keys(k), dtype=object)[rows]
                col = src.frame[k]
                same = col.dtype.kind in "iu" or isinstance(col.dtype, pd.StringDtype)
                shown[k] = col.array.take(rows) if same else keys[k]
            else:
                keys[k] = np.full(len(points), None, dtype=object)
                shown[k] = keys[k]
        t = points.t
    else:
        base, markers = session.points_of(key_f)
        assert markers is not None
        order = np.argsort(base.t, kind="stable")
        t = base.t[order]
        present = [k for k in d.keys if k in markers.columns]
        spine = Points.from_frame(markers, present, f"{key_f.fqn} markers")
        for k in d.keys:
            if k in spine.keys:
                keys[k] = spine.keys[k][order]
            else:
                keys[k] = np.full(len(t), None, dtype=object)
            shown[k] = keys[k]
    mask = np.ones(len(t), dtype=bool)
    if lo is not None:
        mask &= t >= lo
    if hi is not None:
        mask &= t < hi
    if not mask.all():
        t = t[mask]
        keys = {k: v[mask] for k, v in keys.items()}
        shown = {k: np.asarray(v)[mask] for k, v in shown.items()}
    points = Points(keys, t)
    out = pd.DataFrame({"timestamp": pd.Series(t.astype("datetime64[us]")).dt.tz_localize("UTC")})
    for k in d.keys:
        out[k] = shown[k]
    for text, sel in named:
        series = to_series(session.lookup(sel, points), text)
        out[text] = series.to_numpy() if series.dtype == object else series.array
    model.training_rows = len(out)
    return out
