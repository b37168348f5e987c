"""Durations and timestamps, pure.

Internally Raptor measures time as integer **microseconds since the UTC epoch**
(:data:`Micros`): bucket maths on integers is exact, comparisons are cheap, and a datetime is
built only at the edges. Durations are Go duration strings in manifests (``500ms``, ``1h30m``).

>>> parse_duration("1h30m") == 90 * 60 * SECOND
True
>>> format_duration(parse_duration("90m"))
'1h30m'
>>> format_timestamp(parse_timestamp("2024-01-02T03:04:05.5+01:00"))
'2024-01-02T02:04:05.500000Z'
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import NewType

__all__ = [
    "EPOCH",
    "HOUR",
    "MILLISECOND",
    "MINUTE",
    "SECOND",
    "Micros",
    "format_duration",
    "format_timestamp",
    "from_micros",
    "parse_duration",
    "parse_timestamp",
    "to_micros",
]

Micros = NewType("Micros", int)
"""Integer microseconds: a duration, or an instant counted from the UTC epoch."""

MICROSECOND = 1
MILLISECOND = 1_000
SECOND = 1_000_000
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_fromtimestamp = datetime.fromtimestamp

_UNITS = {
    "ns": 0.001,
    "us": MICROSECOND,
    "µs": MICROSECOND,
    "μs": MICROSECOND,
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> Micros:
    """Parse a Go duration string (``"1h30m"``, ``"500ms"``, ``"0"``) into microseconds.

    Raises ``ValueError`` naming the text when it is not a Go duration. Negative durations are
    refused: no Raptor setting accepts one.
    """
    if not isinstance(text, str):
        raise ValueError(f"duration must be a string like '10s' or '1h30m', got {text!r}")
    s = text.strip()
    if s in ("0", ""):
        if s == "":
            raise ValueError("duration is empty; use a Go duration like '10s' or '1h30m'")
        return Micros(0)
    if s.startswith("-"):
        raise ValueError(f"duration {text!r} is negative")
    if s.startswith("+"):
        s = s[1:]
    pos = 0
    total = 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None:
            raise ValueError(
                f"invalid duration {text!r}: use a Go duration like '500ms', '10s', '1h30m'"
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return Micros(round(total))


def format_duration(micros: int) -> str:
    """Format microseconds as the shortest Go duration string (``5400000000`` → ``1h30m``)."""
    if micros == 0:
        return "0s"
    sign = "-" if micros < 0 else ""
    rest = abs(micros)
    out = []
    for unit, size in (("h", HOUR), ("m", MINUTE)):
        if rest >= size:
            out.append(f"{rest // size}{unit}")
            rest %= size
    if rest:
        if rest % SECOND == 0:
            out.append(f"{rest // SECOND}s")
        elif rest >= SECOND:
            out.append(f"{rest / SECOND:.6f}".rstrip("0").rstrip(".") + "s")
        elif rest % MILLISECOND == 0:
            out.append(f"{rest // MILLISECOND}ms")
        else:
            out.append(f"{rest}us")
    return sign + "".join(out)


def to_micros(dt: datetime) -> Micros:
    """Aware datetime → epoch microseconds. A naive datetime is read as UTC (SPEC 8)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return Micros((dt - EPOCH) // timedelta(microseconds=1))


_FAST_RANGE = 2**52  # within ±142 years of the epoch, float seconds round back exactly


def from_micros(micros: int) -> datetime:
    """Epoch microseconds → aware UTC datetime (exact)."""
    if -_FAST_RANGE < micros < _FAST_RANGE:
        # The float's error (< 0.25 µs here) is below the rounding to whole microseconds.
        return _fromtimestamp(micros / 1_000_000, UTC)
    return EPOCH + timedelta(microseconds=micros)


def parse_timestamp(value: object) -> datetime:
    """Parse a timestamp as accepted on input (SPEC 8) into an aware UTC datetime.

    Accepts RFC 3339 strings (``Z`` or an offset, fractions allowed; a missing offset means
    UTC), epoch seconds or milliseconds as numbers (a number above 1e11 is read as
    milliseconds), and datetimes. ``bool`` is refused. Raises ``ValueError`` otherwise.
    """
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, bool):
        raise ValueError(f"invalid timestamp {value!r}: expected RFC 3339 or epoch seconds")
    if isinstance(value, int | float):
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            return EPOCH + timedelta(microseconds=round(seconds * SECOND))
        except OverflowError as exc:
            raise ValueError(f"timestamp {value!r} is out of range") from exc
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"invalid timestamp {value!r}: expected RFC 3339 such as "
                "'2024-05-01T12:00:00Z' or epoch seconds"
            ) from None
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    raise ValueError(f"invalid timestamp {value!r}: expected RFC 3339 or epoch seconds")


def format_timestamp(dt: datetime) -> str:
    """Format as RFC 3339 in UTC with microseconds and ``Z`` (the response form)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
