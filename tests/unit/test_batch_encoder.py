"""The batchGet encoder reuses its containers: every call's body is what fresh dicts give."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from raptor.api.names import parse_selector
from raptor.engine.engine import BatchColumn
from raptor.errors import MissingKeyError, NotFound
from raptor.server.batch import BatchEncoder
from raptor.server.errors import error_document
from raptor.server.wire import dumps, format_micros

NAMES = ["default.a", "default.b", "default.c+sum", "default.d@-1"]


def fresh_body(names: list[str], entities: list[dict[str, str]], cols: list[BatchColumn]) -> bytes:
    results = []
    for r, keys in enumerate(entities):
        values: dict[str, Any] = {}
        for name, col in zip(names, cols, strict=True):
            if r in col.errors:
                values[name] = error_document(col.errors[r])[1]
            else:
                t = col.timestamps[r]
                values[name] = {
                    "value": col.values[r],
                    "timestamp": None if t is None else format_micros(t),
                    "fresh": col.fresh[r],
                }
        results.append({"keys": keys, "values": values})
    return dumps({"selectors": names, "results": results})


cell = st.tuples(
    st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.text(max_size=3)),
    st.one_of(st.none(), st.integers(0, 2**50)),
    st.booleans(),
    st.sampled_from([None, None, None, MissingKeyError("no key 'id'"), NotFound("gone")]),
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[str], list[dict[str, str]], list[BatchColumn]]:
    names = draw(st.sampled_from([NAMES, NAMES[:2], NAMES[1:], []]))  # layouts get reused
    n = draw(st.integers(0, 7))
    entities = [{"id": str(draw(st.integers(0, 9)))} for _ in range(n)]
    cols = []
    for name in names:
        cells = draw(st.lists(cell, min_size=n, max_size=n))
        cols.append(
            BatchColumn(
                parse_selector(name),
                parse_selector(name).fqn,
                [c[0] for c in cells],
                [c[1] for c in cells],
                [c[2] for c in cells],
                {r: c[3] for r, c in enumerate(cells) if c[3] is not None},
            )
        )
    return names, entities, cols


@settings(max_examples=60, deadline=None)
@given(st.lists(batches(), min_size=1, max_size=6), st.integers(2, 8))
def test_successive_bodies_are_those_of_fresh_containers(
    calls: list[tuple[list[str], list[dict[str, str]], list[BatchColumn]]], max_rows: int
) -> None:
    encoder = BatchEncoder(max_rows=max_rows, max_layouts=2)
    for names, entities, cols in calls:
        assert encoder.encode(names, entities, cols) == fresh_body(names, entities, cols)
