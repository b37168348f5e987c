"""Ingestion: rows of a DataSource → the programs of its features → ``Update`` writes.

Shared by the ``push`` builder (rows POSTed to the accessor) and the stream runners. For each
row (SPEC 4.1, 4.5):

1. nested objects are flattened to ``a.b`` keys while the nested form is kept
   (:func:`flatten_row`);
2. the event time comes from the DataSource's ``timestampField`` (RFC 3339 or epoch seconds);
3. for each feature bound to the DataSource, its keys are read from the row by name, its
   program runs with ``ctx.timestamp`` = event time, and its result (``value``, optionally
   other keys or another timestamp) becomes an :class:`~raptor.engine.engine.Update`.

:func:`prepare_rows` is all-or-nothing: every row is checked first and any problem rejects the
batch with :class:`InvalidRows` listing row indexes and reasons, so nothing is written (SPEC 8
push API). :func:`ingest_rows` then applies every update in one state call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from raptor.api.names import require_keys
from raptor.api.timeutil import from_micros, parse_timestamp, to_micros
from raptor.engine.engine import Engine, Update
from raptor.engine.programs import Context
from raptor.errors import InvalidArgument, NotFound, RaptorError

__all__ = ["IngestReport", "InvalidRows", "flatten_row", "ingest_rows", "prepare_rows"]


class InvalidRows(InvalidArgument):
    """Some rows of a batch are invalid; ``problems`` lists ``(row index, reason)``."""

    def __init__(self, data_source: str, problems: list[tuple[int, str]]) -> None:
        self.data_source = data_source
        self.problems = problems
        shown = "; ".join(f"row {i}: {r}" for i, r in problems[:20])
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        super().__init__(
            f"{len(problems)} invalid row(s) for data source {data_source}, nothing was "
            f"written: {shown}{more}"
        )


@dataclass(frozen=True, slots=True)
class IngestReport:
    rows: int
    updates: int
    applied: int


def flatten_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """The row with nested objects also reachable as dotted keys (``a.b``). Pure.

    >>> flatten_row({"a": {"b": 1}, "c": 2})
    {'a': {'b': 1}, 'c': 2, 'a.b': 1}
    """
    out = dict(row)

    def walk(prefix: str, obj: Mapping[str, Any]) -> None:
        for k, v in obj.items():
            key = f"{prefix}.{k}"
            out.setdefault(key, v)
            if isinstance(v, Mapping):
                walk(key, v)

    for k, v in row.items():
        if isinstance(v, Mapping):
            walk(str(k), v)
    return out


def prepare_rows(
    engine: Engine, data_source: str, rows: Sequence[Any]
) -> tuple[list[Update], list[tuple[int, str]]]:
    """Run every bound feature's program on every row, inline. Returns the updates and the
    problems found (row index, reason). Pure apart from running the programs."""
    catalog = engine.catalog
    src = catalog.data_sources.get(data_source)
    if src is None:
        raise NotFound(f"data source {data_source} not found")
    features = catalog.features_of(data_source)
    ts_field = src.timestamp_field
    updates: list[Update] = []
    problems: list[tuple[int, str]] = []
    now = engine.clock.now_micros()
    for i, raw in enumerate(rows):
        if not isinstance(raw, Mapping):
            problems.append((i, f"expected a JSON object, got {type(raw).__name__}"))
            continue
        row = flatten_row(raw)
        if ts_field:
            stamp = row.get(ts_field)
            if stamp is None:
                problems.append((i, f"missing timestamp field {ts_field!r}"))
                continue
            try:
                event_time: datetime = parse_timestamp(stamp)
            except ValueError as exc:
                problems.append((i, f"field {ts_field!r}: {exc}"))
                continue
        else:
            event_time = from_micros(now)
        for rt in features:
            program = rt.program
            if program is None:
                continue
            try:
                names = rt.defn.keys
                values = require_keys(names, row, f"feature {rt.fqn}")
                keys = dict(zip(names, values, strict=True))
                ctx = Context(
                    fqn=rt.fqn,
                    namespace=rt.defn.namespace,
                    keys=keys,
                    timestamp=event_time,
                    get_feature=_no_lookup,
                    get_prediction=_no_lookup,
                )
                res = program.run(row, ctx)
            except RaptorError as exc:
                problems.append((i, str(exc)))
                continue
            if res.value is None:
                continue
            if res.keys is not None:
                keys = {**keys, **res.keys}
            ts = to_micros(res.timestamp) if res.timestamp is not None else to_micros(event_time)
            value = res.value
            if rt.defn.primitive.is_list and not rt.defn.aggr:
                # Update on a list appends; a program returning a whole list sets it.
                updates.extend(Update(rt, keys, v, ts) for v in value)
            else:
                updates.append(Update(rt, keys, value, ts))
    return updates, problems


def _no_lookup(selector: str, keys: Mapping[str, str] | None) -> tuple[Any, datetime | None]:
    raise InvalidArgument(
        f"ctx.get_feature({selector!r}) is not available while ingesting rows; "
        "use a sourceless feature to combine features"
    )


async def ingest_rows(engine: Engine, data_source: str, rows: Sequence[Any]) -> IngestReport:
    """Validate every row, then write every update (all-or-nothing validation)."""
    updates, problems = prepare_rows(engine, data_source, rows)
    if problems:
        raise InvalidRows(data_source, problems)
    applied = await engine.apply_updates(updates) if updates else 0
    return IngestReport(len(rows), len(updates), applied)
