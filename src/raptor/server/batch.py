"""The batchGet response body, encoded from the engine's columns with containers kept across calls.

A response of 100 entities x 5 selectors is 700 small dicts (a cell per entity and selector, a
``values`` object and a result per entity); building and freeing them anew cost more than
orjson's encoding of them, and they are what the garbage collector counts. A
:class:`BatchEncoder` keeps, per list of selector names, one *layout*: every cell dict, wired
into its row's ``values`` dict and its result dict once. A call only overwrites each cell's
three fields and each result's ``keys``, then encodes.

That is safe because :meth:`BatchEncoder.encode` is synchronous: between the first overwrite and
the end of the encoding nothing else runs, so nobody else sees the shared containers. Between
calls a layout still refers to the last response's values and keys (at most ``max_rows`` rows
per layout, ``max_layouts`` layouts); larger batches get containers of their own.

The body is byte for byte what encoding freshly built dicts gives
(``tests/unit/test_batch_encoder.py`` checks it against freshly built dicts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from raptor.engine.engine import BatchColumn
from raptor.server.errors import error_document
from raptor.server.wire import dumps, format_stamps

__all__ = ["BatchEncoder"]


class _Layout:
    """The containers of one response shape: ``cells[column][row]`` wired into ``results``."""

    __slots__ = ("cells", "column_of", "results", "rows")

    def __init__(self, names: Sequence[str], n: int) -> None:
        self.cells: list[list[dict[str, Any]]] = [
            [{"value": None, "timestamp": None, "fresh": False} for _ in range(n)] for _ in names
        ]
        self.rows: list[dict[str, Any]] = [{} for _ in range(n)]
        self.column_of: dict[str, int] = {}
        for j, (name, cells) in enumerate(zip(names, self.cells, strict=True)):
            for row, cell in zip(self.rows, cells, strict=True):
                row[name] = cell
            self.column_of[name] = j
        self.results: list[dict[str, Any]] = [{"keys": None, "values": row} for row in self.rows]


class BatchEncoder:
    """Encodes batchGet bodies ``{"selectors": names, "results": [...]}`` (see the module)."""

    def __init__(self, max_rows: int = 1000, max_layouts: int = 16) -> None:
        self.max_rows = max_rows
        self.max_layouts = max_layouts
        self._layouts: dict[tuple[str, ...], _Layout] = {}

    def _layout(self, names: Sequence[str], n: int) -> _Layout:
        key = tuple(names)
        layout = self._layouts.get(key)
        if layout is not None and len(layout.rows) >= n:
            return layout
        if n > self.max_rows:
            return _Layout(names, n)  # used once
        if len(self._layouts) >= self.max_layouts:
            self._layouts.clear()
        layout = self._layouts[key] = _Layout(names, max(n, min(100, self.max_rows)))
        return layout

    def encode(
        self,
        names: Sequence[str],
        entities: Sequence[Mapping[str, str]],
        columns: Sequence[BatchColumn],
    ) -> bytes:
        """The body for ``columns`` (one per name, in order) of ``entities``: each entity's
        keys and, per name, its cell ``{"value", "timestamp", "fresh"}`` (timestamps as RFC 3339
        text) or the error document of a cell that failed."""
        n = len(entities)
        layout = self._layout(names, n)
        for cells, col in zip(layout.cells, columns, strict=True):
            stamps = format_stamps(col.timestamps)
            # ``cells`` may be longer than ``n``: zip stops with the column
            for cell, v, t, f in zip(cells, col.values, stamps, col.fresh, strict=False):
                cell["value"] = v
                cell["timestamp"] = t
                cell["fresh"] = f
        results = layout.results[:n]
        for result, keys in zip(results, entities, strict=True):
            result["keys"] = keys
        failed = [
            (r, name, exc)
            for name, col in zip(names, columns, strict=True)
            for r, exc in col.errors.items()
        ]
        rows = layout.rows
        for r, name, exc in failed:
            rows[r][name] = error_document(exc)[1]
        try:
            return dumps({"selectors": names, "results": results})
        finally:
            for r, name, _ in failed:  # wire the cells back in
                rows[r][name] = layout.cells[layout.column_of[name]][r]
