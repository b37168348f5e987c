"""Names: fully qualified names, selectors and entity keys. Pure.

* **FQN** ``namespace.name``, where ``-`` of a Kubernetes name becomes ``_``.
* **Selector** ``[namespace.]name[+aggr][@-version][[encoding]]`` (case-insensitive, normalized
  to lower case); ``+aggr`` and ``@-N`` cannot be combined.
* **Keys** map key names to strings; :func:`encode_entity` turns the feature's ordered key
  values into the one string that identifies an entity in state.

>>> s = parse_selector("Shop.Spend+SUM", default_namespace="default")
>>> s.fqn, s.aggr, str(s)
('shop.spend', 'sum', 'shop.spend+sum')
>>> fqn_of("default", "hello-world")
'default.hello_world'
>>> encode_entity(("a", "b"), {"a": "x/y", "b": "1", "extra": "ignored"})
'x%2Fy/1'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NewType
from urllib.parse import quote

from raptor.errors import MissingKeyError, SelectorError

__all__ = [
    "FQN",
    "Selector",
    "encode_entity",
    "fqn_of",
    "normalize_name",
    "parse_selector",
    "require_keys",
]

FQN = NewType("FQN", str)
"""``namespace.name`` with both parts normalized (lower case, ``_`` for ``-``)."""

DEFAULT_NAMESPACE = "default"

_SELECTOR = re.compile(
    r"^((?P<namespace>[a-z0-9]+(?:_[a-z0-9]+)*)\.)?"
    r"(?P<name>[a-z0-9]+(?:_[a-z0-9]+)*)"
    r"(\+(?P<aggr>[a-z]+(?:_[a-z]+)*))?"
    r"(@-(?P<version>[0-9]+))?"
    r"(\[(?P<encoding>[a-z]+(?:_[a-z]+)*)\])?$",
    re.IGNORECASE,
)


def normalize_name(name: str) -> str:
    """A Kubernetes name in its FQN form: lower case, ``-`` replaced by ``_``."""
    return name.lower().replace("-", "_")


def fqn_of(namespace: str | None, name: str) -> FQN:
    """The FQN of an asset; a missing namespace is ``default``."""
    return FQN(f"{normalize_name(namespace or DEFAULT_NAMESPACE)}.{normalize_name(name)}")


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed, normalized selector. ``str(selector)`` is its canonical form."""

    namespace: str
    name: str
    aggr: str | None = None
    version: int = 0
    encoding: str | None = None
    text: str = field(init=False, repr=False, compare=False)
    fqn: FQN = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fqn = f"{self.namespace}.{self.name}"
        out = fqn
        if self.aggr:
            out += f"+{self.aggr}"
        if self.version:
            out += f"@-{self.version}"
        if self.encoding:
            out += f"[{self.encoding}]"
        object.__setattr__(self, "fqn", FQN(fqn))
        object.__setattr__(self, "text", out)

    def __str__(self) -> str:
        return self.text


_HEAD = re.compile(r"^[^+@\[]*")
_cache: dict[tuple[str, str], Selector] = {}


def parse_selector(text: str, default_namespace: str = DEFAULT_NAMESPACE) -> Selector:
    """Parse and normalize a selector; raise :class:`SelectorError` naming the problem.

    Pure and memoized (selectors repeat on hot paths). ``mean`` is normalized to ``avg``.
    """
    cached = _cache.get((text, default_namespace))
    if cached is not None:
        return cached
    if not isinstance(text, str):
        raise SelectorError(f"selector must be a string, got {type(text).__name__}")
    head = _HEAD.match(text)
    if head is not None and "-" in head.group(0):  # Kubernetes names: hello-world
        text_n = head.group(0).replace("-", "_") + text[head.end() :]
    else:
        text_n = text
    m = _SELECTOR.match(text_n)
    if m is None:
        raise SelectorError(
            f"malformed selector {text!r}: expected [namespace.]name[+aggr][@-version]"
        )
    aggr = m.group("aggr")
    version = m.group("version")
    if aggr and version:
        raise SelectorError(f"selector {text!r} combines +{aggr} with @-{version}; use one of them")
    if aggr:
        aggr = aggr.lower()
        if aggr == "mean":
            aggr = "avg"
    sel = Selector(
        namespace=(m.group("namespace") or default_namespace).lower(),
        name=m.group("name").lower(),
        aggr=aggr,
        version=int(version) if version else 0,
        encoding=m.group("encoding").lower() if m.group("encoding") else None,
    )
    if len(_cache) < 65536:
        _cache[(text, default_namespace)] = sel
    return sel


def require_keys(names: Sequence[str], keys: Mapping[str, object], what: str) -> tuple[str, ...]:
    """The values of ``names`` from ``keys``, as strings, in order.

    Extra keys are ignored; a missing key raises :class:`MissingKeyError` naming it and
    ``what`` (the feature).
    """
    out = []
    for name in names:
        try:
            value = keys[name]
        except KeyError:
            raise MissingKeyError(f"{what} needs key {name!r} (keys: {', '.join(names)})") from None
        if value is None:
            raise MissingKeyError(f"{what} needs key {name!r}, got null")
        out.append(value if isinstance(value, str) else str(value))
    return tuple(out)


_PLAIN = re.compile(r"[A-Za-z0-9_.~-]*").fullmatch


def _quote(v: str) -> str:
    return v if _PLAIN(v) else quote(v, safe="")


def encode_entity(names: Sequence[str], keys: Mapping[str, object], what: str = "feature") -> str:
    """The entity id of ``keys`` for a feature keyed by ``names``: values percent-encoded,
    joined by ``/`` in key order (unambiguous; empty for global features)."""
    if len(names) == 1:
        value = keys.get(names[0])
        if type(value) is str:
            return value if _PLAIN(value) else quote(value, safe="")
    return "/".join(_quote(v) for v in require_keys(names, keys, what))
