"""The option decorators: ``@aggregation``, ``@freshness``, ``@keep_previous``, ``@runtime``,
``@namespace`` and ``@labels`` (SPEC 6), with upstream Raptor's parameters and defaults.

They go below ``@feature``/``@model`` (:mod:`raptor.sdk.decorators`), check their own arguments
at once, record the option in an :class:`Options` value on the function or class (attribute
``__raptor_options__``) and return it unchanged. ``@feature``/``@model`` read that value with
:func:`options_of` and check the whole definition. An option given twice, or above
``@feature``/``@model``, raises :class:`~raptor.sdk.types.DefinitionError` naming the file and
line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from raptor.api.assets import KeepPrevious
from raptor.api.windows import AggrFn
from raptor.sdk.checks import fail
from raptor.sdk.features import Feature
from raptor.sdk.models import Model
from raptor.sdk.source import location
from raptor.sdk.types import AggregationFunction, DefinitionError, aggr_fn, duration

__all__ = [
    "Options",
    "aggregation",
    "freshness",
    "keep_previous",
    "labels",
    "name_of",
    "namespace",
    "options_of",
    "runtime",
]

F = TypeVar("F")
Duration = str | timedelta | float


@dataclass
class Options:
    """What the option decorators recorded on a function or class."""

    aggregation: tuple[tuple[AggrFn, ...], int, int] | None = None
    freshness: tuple[int, int | None, int] | None = None
    keep_previous: KeepPrevious | None = None
    runtime: tuple[tuple[str, ...], str | None] | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None


_ATTR = "__raptor_options__"


def options_of(target: Any) -> Options:
    opts = getattr(target, _ATTR, None)
    if isinstance(opts, Options):
        return opts
    return Options()


def _option(option: str, value: Any, target: F) -> F:
    if isinstance(target, Feature | Model):
        raise fail(
            location(target),
            target.name,
            f"@{option} is above @{'feature' if isinstance(target, Feature) else 'model'}; "
            f"put @feature/@model on top and @{option} below it",
        )
    opts = options_of(target)
    if getattr(opts, option) is not None:
        raise fail(location(target), name_of(target), f"@{option} is given twice")
    setattr(opts, option, value)
    try:
        setattr(target, _ATTR, opts)
    except (AttributeError, TypeError):
        raise fail(
            location(target), name_of(target), f"@{option} needs a function or a class"
        ) from None
    return target


def name_of(target: Any) -> str:
    return str(getattr(target, "__name__", target))


# --- option decorators ------------------------------------------------------------------------


def aggregation(
    function: AggregationFunction | str | Sequence[AggregationFunction | str],
    over: Duration,
    granularity: Duration,
) -> Callable[[F], F]:
    """Make the feature a windowed aggregation of its values (SPEC 4.3): ``function`` (one or a
    list; names in any case), the window length ``over`` and the bucket size ``granularity``."""
    items = [function] if isinstance(function, str | AggregationFunction | AggrFn) else function
    try:
        fns = tuple(dict.fromkeys(aggr_fn(f) for f in items))
        window = (duration(over, "over"), duration(granularity, "granularity"))
    except ValueError as exc:
        raise DefinitionError(f"@aggregation: {exc}") from None
    if not fns:
        raise DefinitionError("@aggregation: give at least one function")
    if window[1] <= 0:
        raise DefinitionError("@aggregation: granularity must be positive")
    if window[0] < window[1]:
        raise DefinitionError(
            f"@aggregation: over ({over}) is shorter than granularity ({granularity})"
        )
    return lambda target: _option("aggregation", (fns, *window), target)


def freshness(
    max_age: Duration, max_stale: Duration | None = None, timeout: Duration | None = None
) -> Callable[[F], F]:
    """Values younger than ``max_age`` are fresh; older than ``max_stale`` (default
    ``max_age``) never served; ``timeout`` bounds an on-request computation (0 = none)."""
    try:
        age = duration(max_age, "max_age")
        stale = None if max_stale is None else duration(max_stale, "max_stale")
        limit = 0 if timeout is None else duration(timeout, "timeout")
    except ValueError as exc:
        raise DefinitionError(f"@freshness: {exc}") from None
    if stale is not None and stale < age:
        raise DefinitionError(f"@freshness: max_stale ({max_stale}) is shorter than max_age")
    return lambda target: _option("freshness", (age, stale, limit), target)


def keep_previous(versions: int, over: Duration) -> Callable[[F], F]:
    """Keep ``versions`` previous values (``name@-1`` ...), each usable ``i × over`` after the
    write that shifted it."""
    if not isinstance(versions, int) or isinstance(versions, bool) or versions < 1:
        raise DefinitionError(f"@keep_previous: versions must be 1 or more, got {versions!r}")
    try:
        span = duration(over, "over")
    except ValueError as exc:
        raise DefinitionError(f"@keep_previous: {exc}") from None
    if span <= 0:
        raise DefinitionError("@keep_previous: over must be a positive duration")
    return lambda target: _option("keep_previous", KeepPrevious(versions, span), target)


def runtime(packages: Sequence[str] | None = None, env_name: str | None = None) -> Callable[[F], F]:
    """Run the program in the named runtime ``env_name`` whose image provides ``packages``;
    the program may then import them."""
    pkgs = tuple(packages or ())
    return lambda target: _option("runtime", (pkgs, env_name), target)


def namespace(name: str) -> Callable[[F], F]:
    """Put the asset in Kubernetes namespace ``name`` (default ``default``)."""
    if not isinstance(name, str) or not re.match(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$", name, re.I):
        raise DefinitionError(f"@namespace: {name!r} is not a valid namespace")
    return lambda target: _option("namespace", name, target)


def labels(labels: Mapping[str, str]) -> Callable[[F], F]:
    """Kubernetes labels for the asset's manifest (``metadata.labels``)."""
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise DefinitionError("@labels: expected a mapping of strings to strings")
    return lambda target: _option("labels", dict(labels), target)
