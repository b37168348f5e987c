"""Primitives: the value types a feature can hold, and value checking. Pure.

``int`` (64-bit), ``float``, ``string``, ``bool``, ``timestamp`` and a list of one of those
(``[]int``...). :meth:`Primitive.check` is the one place values are type-checked: an ``int`` is
accepted for a ``float`` (and becomes a float), timestamps may be RFC 3339 strings or epoch
numbers (SPEC 8); nothing else is coerced.

>>> Primitive.parse("[]float").check([1, 2.5])
[1.0, 2.5]
>>> Primitive.parse("int").check(True)
Traceback (most recent call last):
...
raptor.errors.ValueTypeError: expected int, got bool True
"""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from raptor.api.timeutil import parse_timestamp
from raptor.errors import ValueTypeError

__all__ = ["INT64_MAX", "INT64_MIN", "Primitive", "Scalar", "Value"]

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

Scalar = int | float | str | bool | datetime
Value = Scalar | list[Any]


class Primitive(enum.Enum):
    """A feature's value type. ``value`` is the manifest spelling."""

    INT = "int"
    FLOAT = "float"
    STRING = "string"
    BOOL = "bool"
    TIMESTAMP = "timestamp"
    INT_LIST = "[]int"
    FLOAT_LIST = "[]float"
    STRING_LIST = "[]string"
    BOOL_LIST = "[]bool"
    TIMESTAMP_LIST = "[]timestamp"

    @classmethod
    def parse(cls, text: str) -> Primitive:
        """Parse a manifest spelling (case-insensitive; ``str``/``double``... are not accepted)."""
        try:
            return cls(text.strip().lower())
        except (ValueError, AttributeError):
            choices = ", ".join(p.value for p in cls)
            raise ValueError(f"unknown primitive {text!r}; expected one of {choices}") from None

    @property
    def is_list(self) -> bool:
        return self.value.startswith("[]")

    @property
    def scalar(self) -> Primitive:
        """The element type of a list primitive (itself for scalars)."""
        return Primitive(self.value[2:]) if self.is_list else self

    @property
    def list_of(self) -> Primitive:
        """The list primitive whose elements are this scalar."""
        return self if self.is_list else Primitive("[]" + self.value)

    @property
    def numeric(self) -> bool:
        return self in (Primitive.INT, Primitive.FLOAT)

    def check(self, value: object) -> Any:
        """Return ``value`` normalized to this primitive, or raise :class:`ValueTypeError`."""
        if self.is_list:
            if not isinstance(value, list | tuple):
                raise ValueTypeError(f"expected {self.value}, got {_describe(value)}")
            elem = self.scalar
            return [elem._check_scalar(v, i) for i, v in enumerate(value)]
        return self._check_scalar(value, None)

    def check_element(self, value: object) -> Any:
        """Check one element for ``Append`` on a list primitive."""
        return self.scalar._check_scalar(value, None)

    def _check_scalar(self, value: object, index: int | None) -> Any:
        where = f" at index {index}" if index is not None else ""
        p = self
        if p is Primitive.STRING:
            if isinstance(value, str):
                return value
        elif p is Primitive.INT:
            if isinstance(value, int) and not isinstance(value, bool):
                if INT64_MIN <= value <= INT64_MAX:
                    return value
                raise ValueTypeError(f"int{where} out of 64-bit range: {value}")
        elif p is Primitive.FLOAT:
            if isinstance(value, float):
                return value
            if isinstance(value, int) and not isinstance(value, bool):
                return float(value)
        elif p is Primitive.BOOL:
            if isinstance(value, bool):
                return value
        elif isinstance(value, datetime | str | int | float) and not isinstance(value, bool):
            try:
                return parse_timestamp(value)
            except ValueError as exc:
                raise ValueTypeError(f"timestamp{where}: {exc}") from None
        raise ValueTypeError(f"expected {p.value}{where}, got {_describe(value)}")


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"
