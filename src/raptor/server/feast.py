"""The Feast-compatible read endpoint, ``POST /get-online-features``: shape translation. Pure.

Request, as Feast's feature server takes it::

    {"features": ["spend+sum", "default.clicks", "default:spend+sum"],
     "entities": {"user_id": [1, 2, 3]},
     "full_feature_names": false}

Feature references are Raptor selectors; Feast's ``view:feature`` form is read as
``namespace:selector``. ``feature_service`` is not supported (400). Entity values may be strings
or integers; they become the string keys of the engine.

Response, Feast's column-major shape: one result per column, entity columns first (SPEC 8)::

    {"metadata": {"feature_names": ["user_id", "spend+sum", ...]},
     "results": [{"values": [1, 2, 3], "statuses": ["PRESENT", ...],
                  "event_timestamps": ["1970-01-01T00:00:00Z", ...]},
                 {"values": [12.5, null, 3.0], "statuses": ["PRESENT", "NOT_FOUND", ...],
                  "event_timestamps": ["2024-05-01T12:00:00Z", "1970-01-01T00:00:00Z", ...]}]}

Column names are the selector without its namespace (``spend+sum``), or the full normalized
selector (``default.spend+sum``) with ``full_feature_names``. Entity columns echo the values as
sent, with status ``PRESENT`` and the epoch as timestamp, as Feast does. Statuses:

* ``PRESENT`` — a value, fresh;
* ``OUTSIDE_MAX_AGE`` — a value, past the feature's freshness (still within its staleness);
* ``NULL_VALUE`` — the read succeeded at a time but yielded no value (e.g. ``min`` of an empty
  window);
* ``NOT_FOUND`` — nothing stored for the entity.

Feast's shape has no per-cell error, so a cell that fails (a missing key, a timeout, a failing
program) fails the whole request with that error's status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from raptor.api.names import Selector, parse_selector
from raptor.api.timeutil import EPOCH
from raptor.engine.pipeline import FeatureValue
from raptor.errors import InvalidArgument, RaptorError

__all__ = ["FeastRequest", "build_response", "parse_request"]


@dataclass(frozen=True, slots=True)
class FeastRequest:
    selectors: tuple[Selector, ...]
    feature_names: tuple[str, ...]
    entity_names: tuple[str, ...]
    entity_columns: tuple[list[Any], ...]
    entities: tuple[dict[str, str], ...]


def _selector(ref: Any, index: int, namespace: str) -> Selector:
    if not isinstance(ref, str):
        raise InvalidArgument(f"features[{index}] must be a string selector")
    ns, sep, rest = ref.partition(":")
    if sep:
        return parse_selector(rest, ns.lower().replace("-", "_") or namespace)
    return parse_selector(ref, namespace)


def parse_request(body: Any, namespace: str = "default") -> FeastRequest:
    """Validate a Feast request body; raise :class:`InvalidArgument` naming the field."""
    if not isinstance(body, dict):
        raise InvalidArgument("request body must be a JSON object")
    if body.get("feature_service") is not None:
        raise InvalidArgument(
            "feature_service is not supported by Raptor: list the selectors in 'features'"
        )
    refs = body.get("features")
    if not isinstance(refs, list) or not refs:
        raise InvalidArgument("'features' must be a non-empty array of selectors")
    full = body.get("full_feature_names", False)
    if not isinstance(full, bool):
        raise InvalidArgument("'full_feature_names' must be a boolean")
    selectors = tuple(_selector(r, i, namespace) for i, r in enumerate(refs))
    names = tuple(str(s) if full else str(s)[len(s.namespace) + 1 :] for s in selectors)
    raw = body.get("entities")
    if not isinstance(raw, dict) or not raw:
        raise InvalidArgument("'entities' must be an object of key name to array of values")
    columns: list[list[Any]] = []
    length: int | None = None
    for name, values in raw.items():
        if not isinstance(values, list):
            raise InvalidArgument(f"entities.{name} must be an array of values")
        if length is None:
            length = len(values)
        elif len(values) != length:
            raise InvalidArgument(
                f"entities.{name} has {len(values)} values; every entity column needs {length}"
            )
        for i, v in enumerate(values):
            if isinstance(v, bool) or not isinstance(v, str | int):
                raise InvalidArgument(
                    f"entities.{name}[{i}] must be a string or an integer, got {v!r}"
                )
        columns.append(values)
    entity_names = tuple(raw)
    rows = tuple(
        {n: str(col[i]) for n, col in zip(entity_names, columns, strict=True)}
        for i in range(length or 0)
    )
    return FeastRequest(selectors, names, entity_names, tuple(columns), rows)


def _status(fv: FeatureValue) -> str:
    if fv.value is None:
        return "NOT_FOUND" if fv.timestamp is None else "NULL_VALUE"
    return "PRESENT" if fv.fresh else "OUTSIDE_MAX_AGE"


def build_response(
    req: FeastRequest, rows: list[list[FeatureValue | RaptorError]]
) -> dict[str, Any]:
    """The Feast response for ``rows`` (entity-major, as ``Engine.get_many`` returns them);
    raises the first cell error, since Feast's shape cannot carry one."""
    n = len(rows)
    results: list[dict[str, Any]] = [
        {"values": col, "statuses": ["PRESENT"] * n, "event_timestamps": [EPOCH] * n}
        for col in req.entity_columns
    ]
    for j in range(len(req.selectors)):
        values: list[Any] = []
        statuses: list[str] = []
        stamps: list[Any] = []
        for row in rows:
            cell = row[j]
            if isinstance(cell, RaptorError):
                raise cell
            values.append(cell.value)
            statuses.append(_status(cell))
            stamps.append(cell.timestamp or EPOCH)
        results.append({"values": values, "statuses": statuses, "event_timestamps": stamps})
    return {
        "metadata": {"feature_names": [*req.entity_names, *req.feature_names]},
        "results": results,
    }
