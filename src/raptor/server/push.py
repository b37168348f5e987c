"""Rows of the push API: JSON array or NDJSON bodies into a list of rows. Pure.

``POST /api/v1alpha1/datasources/{namespace}/{name}/rows`` takes

* ``application/x-ndjson`` (also ``application/jsonl``, ``application/jsonlines``,
  ``application/json-seq``): one JSON object per line, blank lines skipped;
* ``application/json`` (or ``*/*+json``): a JSON array of objects, or one object;
* no content type, ``text/plain``, ``application/x-www-form-urlencoded`` (curl ``-d``) or
  ``application/octet-stream``: sniffed — a body starting with ``[`` is an array, a body that
  parses as one JSON value is that value, anything else is read as NDJSON.

Other content types are refused (415). A malformed NDJSON line is a row problem (422 listing
the row index, like any other invalid row: all or nothing), a malformed JSON document is 400.
"""

from __future__ import annotations

from typing import Any

import orjson

from raptor.engine.ingest import InvalidRows
from raptor.errors import InvalidArgument
from raptor.server.errors import UnsupportedMediaType
from raptor.server.wire import loads

__all__ = ["NDJSON_TYPES", "parse_rows"]

NDJSON_TYPES = frozenset(
    {
        "application/x-ndjson",
        "application/ndjson",
        "application/jsonl",
        "application/x-jsonlines",
        "application/jsonlines",
        "application/json-seq",
    }
)
_SNIFFED = frozenset(
    {"", "text/plain", "application/x-www-form-urlencoded", "application/octet-stream"}
)


def _ndjson(body: bytes, data_source: str) -> list[Any]:
    rows: list[Any] = []
    problems: list[tuple[int, str]] = []
    for line in body.splitlines():
        line = line.strip().lstrip(b"\x1e")  # RFC 7464 record separators
        if not line:
            continue
        try:
            rows.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            problems.append((len(rows) + len(problems), f"invalid JSON: {exc}"))
    if problems:
        raise InvalidRows(data_source, problems)
    return rows


def _document(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        return [value]
    raise InvalidArgument("rows must be a JSON array of objects, an object, or NDJSON")


def parse_rows(body: bytes, media_type: str, data_source: str) -> list[Any]:
    """The rows of a push body (see the module docstring for the accepted forms)."""
    if media_type in NDJSON_TYPES:
        return _ndjson(body, data_source)
    if media_type == "application/json" or media_type.endswith("+json"):
        return _document(loads(body))
    if media_type not in _SNIFFED:
        raise UnsupportedMediaType(
            f"unsupported content type {media_type!r}: send application/json (an array of "
            "rows) or application/x-ndjson"
        )
    text = body.lstrip()
    if not text:
        return []
    if text[:1] == b"[":
        return _document(loads(body))
    try:
        return _document(orjson.loads(body))
    except orjson.JSONDecodeError:
        return _ndjson(body, data_source)
