"""SDK value types: aggregation names, production configs, durations, return annotations.

Everything here is pure and cheap to import (no pandas). The SDK speaks upstream Raptor's
vocabulary (``AggregationFunction.Sum``, ``StreamingConfig(kind="kafka", ...)``, ``'10h'``) and
turns it into the resolved definitions of :mod:`raptor.api.assets`:

* :class:`AggregationFunction` names the window functions; members exist in upstream's spelling
  (``Sum``) and upper case (``SUM``); :func:`aggr_fn` also takes strings in any case and the
  engine's :class:`~raptor.api.windows.AggrFn`. ``Mean`` is ``Avg``.
* :class:`StreamingConfig`, :class:`RestConfig` and :class:`PushConfig` are the
  ``production_config`` of a data source: each knows its DataSource ``kind`` and config entries.
* :func:`duration` accepts Go durations (``'1h30m'``), upstream's days (``'2d'``),
  :class:`~datetime.timedelta` and seconds, and returns integer microseconds.
* :func:`primitive_of` reads a program's return annotation (AST, as the engine does) and
  names its :class:`~raptor.api.primitives.Primitive`.

:class:`DefinitionError` is what decorators raise for a bad definition; it is a
:class:`~raptor.errors.ManifestError` (the definition would make an invalid manifest) whose
message starts with the Python location of the definition.
"""

from __future__ import annotations

import ast
import enum
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from raptor.api.assets import ConfigValue
from raptor.api.primitives import Primitive
from raptor.api.timeutil import SECOND, parse_duration
from raptor.api.windows import AggrFn
from raptor.errors import ManifestError

__all__ = [
    "AggregationFunction",
    "DefinitionError",
    "PushConfig",
    "RestConfig",
    "SecretRef",
    "StreamingConfig",
    "aggr_fn",
    "duration",
    "primitive_of",
]


class DefinitionError(ManifestError):
    """A decorator was given a definition that cannot become a valid manifest."""


class AggregationFunction(enum.Enum):
    """Window aggregation functions (SPEC 4.3). ``Mean`` is an alias of ``Avg``."""

    Sum = "sum"
    Count = "count"
    Min = "min"
    Max = "max"
    Avg = "avg"
    Mean = "avg"
    SUM = "sum"
    COUNT = "count"
    MIN = "min"
    MAX = "max"
    AVG = "avg"
    MEAN = "avg"

    def __str__(self) -> str:
        return self.value


def aggr_fn(value: AggregationFunction | AggrFn | str) -> AggrFn:
    """The engine's :class:`AggrFn` for any accepted spelling; ``ValueError`` otherwise."""
    if isinstance(value, AggrFn):
        return value
    if isinstance(value, AggregationFunction):
        return AggrFn(value.value)
    if isinstance(value, str):
        return AggrFn.parse(value)
    raise ValueError(
        f"unknown aggregation {value!r}; expected sum, count, min, max, avg (or mean), "
        "as a string in any case or an AggregationFunction"
    )


@dataclass(frozen=True, slots=True)
class SecretRef:
    """A config value read from a Kubernetes Secret (``secretKeyRef``) instead of the manifest."""

    name: str
    key: str


def _config_entries(items: Mapping[str, Any]) -> tuple[ConfigValue, ...]:
    out: list[ConfigValue] = []
    for name, value in items.items():
        if value is None:
            continue
        if isinstance(value, SecretRef):
            out.append(ConfigValue(name, secret_name=value.name, secret_key=value.key))
        elif isinstance(value, list | tuple):
            out.append(ConfigValue(name, ",".join(str(v) for v in value)))
        elif isinstance(value, str | int | float | bool):
            out.append(ConfigValue(name, value))
        else:
            raise ValueError(
                f"config {name!r}: {type(value).__name__} is not a string, number, bool, "
                "list or SecretRef"
            )
    return tuple(out)


@dataclass(frozen=True)
class StreamingConfig:
    """A streaming DataSource: ``kind`` is the broker (``kafka``, ``redis``, ``nats``...); the
    other keywords are its config (SPEC 8.1: ``brokers``, ``topics``, ``consumer_group``...)."""

    kind: str = "kafka"
    config: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, kind: str = "kafka", **config: Any) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "config", dict(config))

    @property
    def data_source_kind(self) -> str:
        return "streaming"

    def entries(self) -> tuple[ConfigValue, ...]:
        return _config_entries({"kind": self.kind, **self.config})


@dataclass(frozen=True)
class RestConfig:
    """A ``rest`` DataSource: the row is fetched at request time from ``url`` (templating
    ``{key:<name>}`` and ``{keys}``)."""

    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)

    def __init__(
        self,
        url: str,
        method: str = "GET",
        headers: Mapping[str, str] | None = None,
        body: str | None = None,
        **config: Any,
    ) -> None:
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "method", method.upper())
        object.__setattr__(self, "headers", dict(headers or {}))
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "config", dict(config))

    @property
    def data_source_kind(self) -> str:
        return "rest"

    def entries(self) -> tuple[ConfigValue, ...]:
        items: dict[str, Any] = {"url": self.url, "method": self.method}
        if self.headers:
            items["headers"] = json.dumps(dict(self.headers), sort_keys=True)
        items["body"] = self.body
        items.update(self.config)
        return _config_entries(items)


@dataclass(frozen=True)
class PushConfig:
    """A ``push`` DataSource: rows are POSTed to the accessor (SPEC 8). The default."""

    config: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, **config: Any) -> None:
        object.__setattr__(self, "config", dict(config))

    @property
    def data_source_kind(self) -> str:
        return "push"

    def entries(self) -> tuple[ConfigValue, ...]:
        return _config_entries(self.config)


ProductionConfig = StreamingConfig | RestConfig | PushConfig

_DAYS = re.compile(r"(\d+(?:\.\d*)?)d")


def duration(value: str | timedelta | float, what: str) -> int:
    """Microseconds of a Go duration string (``'10s'``, ``'1h30m'``; ``'2d'`` is accepted as
    48h), a timedelta, or a number of seconds. ``ValueError`` naming ``what`` otherwise."""
    if isinstance(value, timedelta):
        micros = value // timedelta(microseconds=1)
    elif isinstance(value, bool):
        raise ValueError(f"{what}: expected a duration like '10s' or '1h', got {value!r}")
    elif isinstance(value, int | float):
        micros = round(value * SECOND)
    elif isinstance(value, str):
        text = _DAYS.sub(lambda m: f"{float(m.group(1)) * 24:g}h", value.strip())
        try:
            micros = parse_duration(text)
        except ValueError as exc:
            raise ValueError(f"{what}: {exc}") from None
    else:
        raise ValueError(f"{what}: expected a duration like '10s' or '1h', got {value!r}")
    if micros < 0:
        raise ValueError(f"{what}: duration {value!r} is negative")
    return int(micros)


def _is_none(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


_SCALARS = {
    "str": Primitive.STRING,
    "int": Primitive.INT,
    "float": Primitive.FLOAT,
    "bool": Primitive.BOOL,
    "datetime": Primitive.TIMESTAMP,
    "datetime.datetime": Primitive.TIMESTAMP,
}
_LISTS = frozenset({"list", "List", "typing.List"})


def primitive_of(node: ast.expr | None, optional_ok: bool = True) -> Primitive | None:
    """The primitive a return annotation names (``float``, ``list[str]``, ``Optional[int]``,
    ``"int"``...), or None when it names none. Pure."""
    if node is None:
        return None
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        try:
            inner = ast.parse(node.value, mode="eval").body
        except SyntaxError:
            return None
        return primitive_of(inner, optional_ok)
    if optional_ok:
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            if _is_none(node.right):
                return primitive_of(node.left, False)
            if _is_none(node.left):
                return primitive_of(node.right, False)
        if isinstance(node, ast.Subscript):
            base = _dotted(node.value)
            if base in ("Optional", "typing.Optional"):
                return primitive_of(node.slice, False)
            if base in ("Union", "typing.Union") and isinstance(node.slice, ast.Tuple):
                rest = [e for e in node.slice.elts if not _is_none(e)]
                if len(rest) == 1 and len(node.slice.elts) == 2:
                    return primitive_of(rest[0], False)
    dotted = _dotted(node)
    if dotted is not None:
        return _SCALARS.get(dotted)
    if isinstance(node, ast.Subscript) and _dotted(node.value) in _LISTS:
        element = primitive_of(node.slice, False)
        if element is not None and not element.is_list:
            return element.list_of
    return None
