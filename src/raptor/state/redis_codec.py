"""The byte formats the Redis state store shares with its Lua scripts, Python side. Pure.

Nothing here imports ``redis``: :mod:`raptor.state.redis` packs values and window events with
these functions and decodes the replies; the Lua side of the same formats is in
:mod:`raptor.state.redis_scripts` and :mod:`raptor.state.redis_window_scripts`. Unit-testable
without a server.

Why binary formats: Lua numbers are doubles, so a 64-bit int cannot travel through Lua as a
number. Every int crossing into Lua is split into ``(hi, lo)`` with ``x = hi * 2**32 + lo`` and
``0 <= lo < 2**32`` (both exact doubles); a float travels as its 8 IEEE bytes with ``lo = -1`` as
the tag. Lua adds ``(hi, lo)`` pairs with a carry, so int sums stay exact (beyond int64, even),
and adds floats in double arithmetic in the same order as the in-memory store, so results are
bit-identical. ``struct`` (bundled with Redis' Lua) packs and unpacks these bytes.

Formats (big-endian):

* **Values** (one string per feature and entity): entries back to back, current value first,
  then previous versions; each is ``>ddI`` timestamp, the last instant it is alive (epoch µs;
  ``2**63`` = never, ``-2**63`` = a version that had expired when it was shifted, absent for
  good) and the body length, then the body: the value as msgpack (msgspec). APPEND rewrites a
  msgpack array header in Lua; INCR decodes and encodes msgpack numbers in Lua.
* **Event** (window adds, 17 bytes): ``>d`` bucket (or event time for future events), then a
  number: ``B`` tag 0 + ``>iI`` (hi, lo) for an int, tag 1 + ``>d`` for a float.
* **Partial** (a bucket field ``"<level>:<index>"``, and the reply of a window read):
  ``>Bd`` tag bits (1 sum, 2 min, 4 max are floats) and count, then sum (int ``>dI``, float
  ``>d``), min and max (int ``>iI``, float ``>d``).
* **Window meta** (field ``"m"`` of the window hash): ``>ddd`` next prune time, pending sequence
  number, the latest bucket expiry the hash TTL was set for, then one ``>d`` per level: the
  lowest bucket index that may still be present.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec

from raptor.api.windows import Partial, WindowSpec
from raptor.errors import ValueTypeError
from raptor.state import Stamped, WriteOp

__all__ = [
    "EventGroup",
    "Pending",
    "decode_partial",
    "decode_values",
    "decode_write",
    "encode_event",
    "encode_events",
    "encode_number",
    "encode_value",
    "pack_int_event",
    "split_events",
]

# -- values -------------------------------------------------------------------------------------

_ENTRY = struct.Struct(">ddI")
"""The header of one entry of a values string: timestamp, alive until, body length."""
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()
"""Decodes an entry's body (msgpack)."""


def encode_value(value: Any) -> bytes:
    """msgpack bytes of a value; naive datetimes are taken as UTC (SPEC 8)."""
    if type(value) is datetime and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif type(value) is list and value and type(value[0]) is datetime:
        value = [v.replace(tzinfo=UTC) if v.tzinfo is None else v for v in value]
    try:
        return _ENCODER.encode(value)
    except (OverflowError, TypeError) as exc:
        raise ValueTypeError(f"cannot store {type(value).__name__} value: {exc}") from None


def decode_values(blob: bytes | None, versions: int, now: int) -> list[Stamped | None]:
    """The value and up to ``versions`` previous ones in a values string (``None`` for a
    missing key, a missing version or one not alive at ``now``)."""
    out: list[Stamped | None] = [None] * (versions + 1)
    if blob is None:
        return out
    view = memoryview(blob)
    pos, end = 0, len(blob)
    for i in range(versions + 1):
        if pos >= end:
            break
        ts, alive_until, size = _ENTRY.unpack_from(blob, pos)
        pos += _ENTRY.size
        if now <= alive_until:
            out[i] = Stamped(_DECODER.decode(view[pos : pos + size]), int(ts))
        pos += size
    return out


def decode_write(reply: Any, op: WriteOp, value: Any, timestamp: int) -> Stamped | None:
    """What a write stored, from the reply of WRITE (``None``: an older write, ignored)."""
    if reply is None:
        return None
    if op is WriteOp.SET:
        return Stamped(list(value) if type(value) is list else value, timestamp)
    return Stamped(_DECODER.decode(reply), timestamp)


# -- window events ------------------------------------------------------------------------------

_INT_EVENT = struct.Struct(">dBiI")
_FLOAT_EVENT = struct.Struct(">dBd")
_HEAD = struct.Struct(">Bd")
_D = struct.Struct(">d")
_DI = struct.Struct(">dI")
_II = struct.Struct(">iI")
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1

Pending = tuple[list[tuple[int, Any]], list[tuple[int, Any]]]
"""Split window events of one key: ``(level-0 bucket, value)`` and future ``(time, value)``."""


def encode_number(x: Any) -> tuple[int, float | int]:
    """The ``(tag, payload)`` of a window value: tag 0 int, 1 float. Bools count as ints; any
    other value counts as int 0 (only ``count`` is meaningful for non-numeric features)."""
    if type(x) is float:
        return 1, x
    if isinstance(x, int):
        if not _INT64_MIN <= x <= _INT64_MAX:
            raise OverflowError(f"window value {x} is outside the 64-bit int range")
        return 0, int(x)
    if isinstance(x, float):
        return 1, float(x)
    return 0, 0


def encode_events(events: list[tuple[int, Any]]) -> bytes:
    """Pack ``(position, value)`` pairs (position = bucket index or event time) for Lua."""
    out = bytearray()
    int_event, lo, hi = _INT_EVENT.pack, _INT64_MIN, _INT64_MAX
    for pos, x in events:
        if type(x) is int and lo <= x <= hi:  # the common case, inlined
            out += int_event(pos, 0, x >> 32, x & 0xFFFFFFFF)
            continue
        tag, v = encode_number(x)
        if tag:
            out += _FLOAT_EVENT.pack(pos, 1, v)
        else:
            iv = int(v)
            out += _INT_EVENT.pack(pos, 0, iv >> 32, iv & 0xFFFFFFFF)
    return bytes(out)


pack_int_event = _INT_EVENT.pack
"""``pack_int_event(pos, 0, x >> 32, x & 0xFFFFFFFF)``: one int event (64-bit ``x``) for Lua."""


def encode_event(pos: int, x: Any) -> bytes:
    """One ``(position, value)`` pair packed for Lua (what :func:`encode_events` appends).
    Raises ``OverflowError`` for an int outside 64 bits."""
    if type(x) is int and _INT64_MIN <= x <= _INT64_MAX:
        return _INT_EVENT.pack(pos, 0, x >> 32, x & 0xFFFFFFFF)
    tag, v = encode_number(x)
    if tag:
        return _FLOAT_EVENT.pack(pos, 1, v)
    iv = int(v)
    return _INT_EVENT.pack(pos, 0, iv >> 32, iv & 0xFFFFFFFF)


def decode_partial(blob: bytes | None) -> Partial:
    """Decode a packed partial (the reply of a window read); empty → the empty partial."""
    if not blob:
        return (0, 0, None, None)
    tag, count = _HEAD.unpack_from(blob, 0)
    pos = _HEAD.size
    s: Any
    if tag & 1:
        (s,) = _D.unpack_from(blob, pos)
        pos += 8
    else:
        hi, lo = _DI.unpack_from(blob, pos)
        s = int(hi) * 4294967296 + lo
        pos += 12
    parts: list[Any] = []
    for bit in (2, 4):
        if tag & bit:
            parts.append(_D.unpack_from(blob, pos)[0])
        else:
            hi, lo = _II.unpack_from(blob, pos)
            parts.append(hi * 4294967296 + lo)
        pos += 8
    return (s, int(count), parts[0], parts[1])


def split_events(
    window: WindowSpec, events: Sequence[tuple[int, Any]], now: int, into: Pending
) -> int:
    """Sort events into level-0 buckets and future events (late ones are dropped, as
    SPEC 4.3 says); return how many were not late."""
    g = window.granularity
    oldest = now // g - window.buckets + 1
    regular, future = into
    n = len(regular) + len(future)
    for t, x in events:
        if t > now:
            future.append((t, x))
        elif t // g >= oldest:
            regular.append((t // g, x))
    return len(regular) + len(future) - n


class EventGroup:
    """The window events of one (feature, entity, partition) in a checkpointed batch, packed
    for Lua as they come: level-0 buckets (``regular``) and future events, with their
    positions and the index of their write."""

    __slots__ = ("fown", "fpos", "future", "g", "oldest", "regular", "rown", "rpos", "window")

    def __init__(self, window: WindowSpec, now: int) -> None:
        self.window = window
        self.g = g = window.granularity
        self.oldest = now // g - window.buckets + 1
        self.regular = bytearray()
        self.future = bytearray()
        self.rpos: list[str] = []
        self.fpos: list[str] = []
        self.rown: list[int] = []
        self.fown: list[int] = []
