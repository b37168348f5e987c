"""JSON on the wire for the REST accessor: encoding, bounded body reading, request shapes.

Framework-free (plain ASGI ``receive``), so the Starlette routes and the raw hot-path dispatcher
of :mod:`raptor.server.rest` share it.

* **Encoding** is orjson. Datetimes (timestamps and ``timestamp`` values) are RFC 3339 in UTC
  with ``Z``; fraction digits appear when the instant has microseconds
  (``2024-05-01T12:00:00Z``, ``2024-05-01T12:00:00.250000Z``) — orjson's native form, about
  ten times cheaper than ``strftime`` per value, which matters for a 500-cell batchGet.
  Batch responses carry epoch microseconds instead (:func:`format_stamps`): each distinct
  instant is formatted once, by orjson itself (so the text is the same), and memoized across
  requests: stored timestamps recur, and a string costs orjson less than a datetime.
  Integers beyond 64 bits (a windowed ``sum`` can overflow) fall back to the standard library
  encoder instead of failing.
* **Bodies** are read chunk by chunk and refused with :class:`PayloadTooLarge` as soon as the
  declared ``Content-Length`` or the bytes received so far pass the limit; the rest of an
  oversized body is never buffered.
* **Content types**: JSON routes read ``application/json`` and ``*/*+json``, and for curl's
  sake also ``text/plain``, ``application/x-www-form-urlencoded`` (curl ``-d``'s default) or
  no content type at all, as JSON. Anything else is 415.
* **Keys** are strings on the wire (SPEC 3); JSON bodies may also give integers, which are
  turned into their decimal string. Anything else is a 400 naming the field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime
from itertools import chain
from typing import Any
from urllib.parse import parse_qsl

import orjson

from raptor.api.timeutil import from_micros
from raptor.errors import InvalidArgument
from raptor.server.errors import ClientDisconnected, PayloadTooLarge, UnsupportedMediaType

__all__ = [
    "JSON_TYPES",
    "Receive",
    "content_type_of",
    "dumps",
    "entity_keys",
    "entity_keys_list",
    "format_micros",
    "format_stamps",
    "loads",
    "query_keys",
    "read_body",
    "require_json_type",
]

Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]

_OPTIONS = orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC
JSON_TYPES = frozenset(
    {"application/json", "text/json", "text/plain", "application/x-www-form-urlencoded", ""}
)


def _default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, set | frozenset):
        return list(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def _std_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        dt = obj.replace(tzinfo=UTC) if obj.tzinfo is None else obj.astimezone(UTC)
        return dt.isoformat().replace("+00:00", "Z")
    return _default(obj)


def _finite(obj: Any) -> Any:
    """``obj`` with NaN and infinities as null, as orjson writes them (fallback path only)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def dumps(obj: Any) -> bytes:
    """Encode a response body (see the module docstring for the datetime form)."""
    try:
        return orjson.dumps(obj, default=_default, option=_OPTIONS)
    except orjson.JSONEncodeError:  # integers past 64 bits
        return json.dumps(_finite(obj), default=_std_default, separators=(",", ":")).encode()


_STAMPS: dict[int | None, str | None] = {None: None}
_STAMPS_MAX = 1 << 16
"""Memo of :func:`format_micros` (cleared when full: a bounded cost, never a leak)."""


def format_micros(micros: int) -> str:
    """Epoch microseconds as RFC 3339 UTC text, exactly as :func:`dumps` writes the datetime."""
    text: str = orjson.dumps(from_micros(micros), option=_OPTIONS)[1:-1].decode()
    return text


def format_stamps(stamps: Sequence[int | None]) -> list[str | None]:
    """:func:`format_micros` of every timestamp (``None`` stays ``None``), each distinct
    instant formatted once. A column usually holds one or two distinct instants (a window's
    read time, values ingested together): those are looked up once, not once per cell."""
    distinct = set(stamps)
    cache = _STAMPS
    missing = distinct.difference(cache)
    if missing:
        if len(cache) + len(missing) > _STAMPS_MAX:
            cache.clear()
            cache[None] = None
        for t in missing:
            assert t is not None
            cache[t] = format_micros(t)
    if len(distinct) == 1:
        return [cache[distinct.pop()]] * len(stamps)
    texts = {t: cache[t] for t in distinct}
    return list(map(texts.__getitem__, stamps))


def loads(body: bytes, what: str = "request body") -> Any:
    """Decode JSON or raise :class:`InvalidArgument` saying where it broke."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"{what} is not valid JSON: {exc}") from None


def content_type_of(headers: Mapping[bytes, bytes] | list[tuple[bytes, bytes]]) -> str:
    """The media type of a request (lower case, parameters dropped; ``""`` when absent)."""
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if name == b"content-type":
            return value.decode("latin-1").split(";", 1)[0].strip().lower()
    return ""


def require_json_type(media_type: str) -> None:
    """Refuse a body that is declared as something other than JSON (415)."""
    if media_type in JSON_TYPES or media_type.endswith("+json"):
        return
    raise UnsupportedMediaType(f"unsupported content type {media_type!r}: send application/json")


def _content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise InvalidArgument("Content-Length is not a number") from None
    return None


async def read_body(receive: Receive, headers: list[tuple[bytes, bytes]], limit: int) -> bytes:
    """Read the whole request body, refusing it (413) as soon as it is known to exceed
    ``limit`` bytes. A client that disconnects mid-body raises :class:`ClientDisconnected`."""
    declared = _content_length(headers)
    if declared is not None and declared > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.disconnect":
            raise ClientDisconnected("client disconnected while sending the body")
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if len(chunks) == 1:
        return chunks[0]
    return b"".join(chunks)


def query_keys(query_string: bytes) -> dict[str, str]:
    """Entity keys from a query string: ``keys.K=V`` and plain ``K=V`` (``keys.K`` wins when
    both are given; a repeated key keeps its last value). Percent-escapes are UTF-8."""
    if not query_string:
        return {}
    text = query_string.decode("utf-8", "replace")
    pairs: list[tuple[str, str]]
    if "%" in text or "+" in text:
        pairs = parse_qsl(text, keep_blank_values=True)
    else:  # the common case, without escapes: no need for parse_qsl's generality
        pairs = []
        for part in text.split("&"):
            if part:
                name, _, value = part.partition("=")
                pairs.append((name, value))
    keys: dict[str, str] = {}
    dotted: list[tuple[str, str]] = []
    for name, value in pairs:
        if name.startswith("keys."):
            dotted.append((name[5:], value))
        else:
            keys[name] = value
    for name, value in dotted:
        keys[name] = value
    return keys


def entity_keys(obj: Any, where: str) -> dict[str, str]:
    """Validate a JSON object of keys; integers become strings, other types are refused."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidArgument(f"{where} must be an object of key name to string")
    out: dict[str, str] = {}
    for name, value in obj.items():
        if isinstance(value, str):
            out[name] = value
        elif isinstance(value, int) and not isinstance(value, bool):
            out[name] = str(value)
        else:
            raise InvalidArgument(
                f"{where}.{name} must be a string (or an integer), got {type(value).__name__}"
            )
    return out


_DICT = frozenset({dict})
_STR = frozenset({str})


def entity_keys_list(objs: list[Any], where: str) -> list[dict[str, str]]:
    """:func:`entity_keys` of every object of a JSON array (``where[i]`` names a bad one).
    Objects whose values are all strings already (the common case) are kept as they are;
    when every object is such (checked in C, no loop per object), the array itself is."""
    if (
        set(map(type, objs)) == _DICT
        and set(map(type, chain.from_iterable(map(dict.values, objs)))) <= _STR
    ):
        return objs
    out: list[dict[str, str]] = []
    for i, obj in enumerate(objs):
        if type(obj) is dict:
            for value in obj.values():
                if type(value) is not str:
                    break
            else:
                out.append(obj)
                continue
        out.append(entity_keys(obj, f"{where}[{i}]"))
    return out
