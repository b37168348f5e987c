"""msgspec validation errors, reworded and located as :class:`~raptor.errors.ManifestError`. Pure.

msgspec reports ``Object missing required field `keys` - at `$.spec```; users read
``Feature/default/hello-world, field spec.keys: required field 'keys' is missing``. A
:class:`Where` stands for one document (file, index, resource) and builds its errors;
:func:`translate` parses msgspec's message, turns its ``$.a.b[0]`` path into the dotted field
path, its type names into words, and lists the accepted fields after an unknown one (looked up
in the Struct's type info, so the hint never drifts from the wire types).
"""

from __future__ import annotations

import re
from typing import Final

import msgspec
import msgspec.inspect as mi

from raptor.api.assets import Origin
from raptor.errors import ManifestError

__all__ = ["Where", "translate"]


class Where:
    """Builds located errors for one document."""

    __slots__ = ("origin", "resource")

    def __init__(self, origin: Origin, resource: str | None) -> None:
        self.origin = origin
        self.resource = resource

    @property
    def label(self) -> str:
        """``Model default/model-basic``, for warnings."""
        return (self.resource or "manifest").replace("/", " ", 1)

    def error(self, message: str, field: str | None = None) -> ManifestError:
        return ManifestError(
            message,
            file=self.origin.file,
            index=self.origin.index,
            resource=self.resource,
            field=field,
        )


_MSGSPEC = re.compile(
    r"^(?P<what>.*?)(?: - at `key` in `\$(?P<kpath>[^`]*)`| - at `\$(?P<path>[^`]*)`)?$", re.S
)
_WHAT_FIELD = re.compile(
    r"^Object (?P<kind>missing required|contains unknown) field `(?P<f>[^`]*)`$"
)
_WHAT_TYPE = re.compile(r"^Expected `(?P<exp>[^`]*)`(?:, got `(?P<got>[^`]*)`)?$")
_TYPE_WORDS: Final = {
    "object": "a mapping",
    "array": "a list",
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
}
_SEGMENT = re.compile(r"\.([^.\[]+)|\[[^\]]*\]")


def _words(types: str) -> str:
    return " or ".join(_TYPE_WORDS.get(t, t) for t in types.split(" | "))


def translate(
    exc: msgspec.ValidationError, tp: type[msgspec.Struct], prefix: str, where: Where
) -> ManifestError:
    m = _MSGSPEC.match(str(exc))
    assert m is not None  # the pattern matches any text
    what, path = m.group("what"), m.group("path") or m.group("kpath") or ""
    field = prefix + path if prefix else path.lstrip(".")
    if m.group("kpath") is not None:
        return where.error("mapping keys must be strings", field or None)
    fm = _WHAT_FIELD.match(what)
    if fm is not None:
        name = fm.group("f")
        sub = f"{field}.{name}" if field else name
        if fm.group("kind") == "missing required":
            return where.error(f"required field {name!r} is missing", sub)
        known = _known_fields(tp, path)
        hint = f"; expected one of: {', '.join(known)}" if known else ""
        return where.error(f"unknown field {name!r}{hint}", sub)
    tm = _WHAT_TYPE.match(what)
    if tm is not None:
        got = f", got {_words(tm.group('got'))}" if tm.group("got") else ""
        return where.error(f"expected {_words(tm.group('exp'))}{got}", field or None)
    return where.error(what[:1].lower() + what[1:], field or None)


def _known_fields(tp: type[msgspec.Struct], path: str) -> list[str] | None:
    """The field names accepted at ``path`` (``.spec.builder``) under ``tp``, for hints."""
    info: mi.Type = mi.type_info(tp)
    for seg in _SEGMENT.finditer(path):
        info = _unwrap(info)
        name = seg.group(1)
        if name is not None and isinstance(info, mi.StructType):
            nxt = [f.type for f in info.fields if f.encode_name == name]
            if not nxt:
                return None
            info = nxt[0]
        elif name is None and isinstance(info, mi.ListType | mi.VarTupleType):
            info = info.item_type
        elif name is None and isinstance(info, mi.DictType):
            info = info.value_type
        else:
            return None
    info = _unwrap(info)
    return [f.encode_name for f in info.fields] if isinstance(info, mi.StructType) else None


def _unwrap(info: mi.Type) -> mi.Type:
    if isinstance(info, mi.UnionType):
        for t in info.types:
            if not isinstance(t, mi.NoneType):
                return t
    return info
