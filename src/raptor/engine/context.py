"""The runtime side of feature programs: what a program sees (:class:`Context`), the loaded
:class:`Program` and what it gives back (:class:`ProgramResult`). Loading and checking live in
:mod:`raptor.engine.programs`; running in worker threads under a hard time limit in
:mod:`raptor.engine.executor`.

:class:`Context`, :meth:`Program.run` and :class:`ProgramResult` are on the ingestion hot path:
plain ``__slots__`` objects, a fast path for scalar values of the right type, no validation
beyond what callers already guarantee.

**Return forms** (:meth:`Program.run`): ``value``, ``(value, keys)`` or ``(value, keys,
timestamp)``; ``None`` is "no value". A tuple is always a return form, never a list value.
``keys`` is a dict (values str or int, stringified) or ``None`` (the context's keys); for a
feature with exactly one key it may be a bare ``str``/``int``. ``timestamp`` is a ``datetime``
(naive = UTC) or ``None``. **Upstream order**: upstream's ``feature.streaming.clicks.yaml``
returns ``(value, timestamp, key)``; that order is accepted only when it is unambiguous by type —
the 2nd item is a ``datetime`` (never valid keys) and the 3rd a ``str`` or a dict. Anything else
malformed is a :class:`~raptor.errors.ProgramRuntimeError` naming the feature and what was
returned, as is an exception raised by the program (chained, with the program's line). Raptor
errors raised through ``ctx`` (state unavailable, a dependency's own failure) propagate unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from raptor.api.names import Selector
from raptor.api.primitives import INT64_MAX, INT64_MIN, Primitive
from raptor.errors import ProgramRuntimeError, RaptorError

__all__ = ["Context", "Getter", "Program", "ProgramResult"]

Getter = Callable[[str, Mapping[str, str] | None], tuple[Any, datetime | None]]
"""``(selector, keys) -> (value, timestamp)``; ``(None, None)`` when there is no value."""


def _no_value(selector: str, keys: Mapping[str, str] | None) -> tuple[Any, datetime | None]:
    return None, None


class Context:
    """The ``ctx`` argument of a program.

    ``timestamp`` is an aware UTC datetime: the event time, or the request time for features
    computed on request. ``get_feature``/``get_prediction`` delegate to the getters given here
    (absent getters answer ``(None, None)``); ``keys=None`` means this context's keys, and the
    getter always receives a mapping. ``keys`` is handed to the program as given: pass a fresh
    dict or a read-only view.
    """

    __slots__ = ("_feature", "_prediction", "fqn", "keys", "namespace", "timestamp")

    def __init__(
        self,
        fqn: str,
        namespace: str,
        keys: Mapping[str, str],
        timestamp: datetime,
        get_feature: Getter = _no_value,
        get_prediction: Getter = _no_value,
    ) -> None:
        self.fqn = fqn
        self.namespace = namespace
        self.keys = keys
        self.timestamp = timestamp
        self._feature = get_feature
        self._prediction = get_prediction

    def get_feature(
        self, selector: str, keys: Mapping[str, str] | None = None
    ) -> tuple[Any, datetime | None]:
        """``(value, timestamp)`` of ``selector`` (namespace defaults to the program's)."""
        return self._feature(selector, self.keys if keys is None else keys)

    def get_prediction(
        self, selector: str, keys: Mapping[str, str] | None = None
    ) -> tuple[Any, datetime | None]:
        """``(value, timestamp)`` of a model's prediction."""
        return self._prediction(selector, self.keys if keys is None else keys)

    def __repr__(self) -> str:
        return f"Context(fqn={self.fqn!r}, keys={dict(self.keys)!r}, timestamp={self.timestamp!r})"


@dataclass(frozen=True, slots=True, init=False)
class ProgramResult:
    """A checked program outcome: ``value`` normalized to the primitive (None = no value),
    ``keys`` the program chose (None = the context's), ``timestamp`` aware UTC (None = the
    context's)."""

    value: Any
    keys: dict[str, str] | None
    timestamp: datetime | None

    def __init__(
        self, value: Any, keys: dict[str, str] | None = None, timestamp: datetime | None = None
    ) -> None:
        # The slot descriptors directly: twice as fast as the frozen dataclass __init__.
        _set_value(self, value)
        _set_keys(self, keys)
        _set_timestamp(self, timestamp)


_set_value = vars(ProgramResult)["value"].__set__
_set_keys = vars(ProgramResult)["keys"].__set__
_set_timestamp = vars(ProgramResult)["timestamp"].__set__


# --------------------------------------------------------------------------------------------
# Program


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 80 else text[:77] + '...'}"


@dataclass(frozen=True, slots=True)
class Program:
    """A loaded feature program: immutable, safe to share between threads.

    :meth:`run` is synchronous and runs in the caller's thread; use a
    :class:`~raptor.engine.executor.ProgramExecutor` to run it in a worker under a hard time
    limit.
    """

    fqn: str
    namespace: str
    primitive: Primitive
    source: str
    dependencies: tuple[Selector, ...]
    dynamic_dependencies: bool
    param_names: tuple[str, str]
    keys: tuple[str, ...]
    _func: Callable[[Any, Any], Any] = field(repr=False, compare=False)
    _filename: str = field(repr=False, compare=False)
    _fast_type: type | None = field(repr=False, compare=False)
    uses_context: bool = field(default=True, repr=False, compare=False)
    """False when the code never names its ``ctx`` parameter (a shared context will do)."""

    def run(self, row: Mapping[str, Any], ctx: Context) -> ProgramResult:
        """Call the program and check what it returned (see the module docstring)."""
        out = self.evaluate(row, ctx)
        return out if type(out) is ProgramResult else ProgramResult(out)

    def evaluate(self, row: Mapping[str, Any], ctx: Context) -> Any:
        """Like :meth:`run`, for batches: a plain value comes back bare (checked, ``None`` =
        no value), only the tuple return forms as a :class:`ProgramResult` — a valid value is
        never one, so ``type(out) is ProgramResult`` tells them apart."""
        try:
            out: Any = self._func(row, ctx)
        except RaptorError:
            raise
        except (Exception, SystemExit) as exc:
            raise self._raised(exc) from exc
        fast: Any = self._fast_type  # Any: ``type(out) is fast`` must not narrow ``out``
        if type(out) is fast and (fast is not int or INT64_MIN <= out <= INT64_MAX):
            return out
        if isinstance(out, tuple):
            return self._unpack(out)
        return self._value(out, out)

    # -- checking what the program returned ------------------------------------------------

    def _raised(self, exc: BaseException) -> ProgramRuntimeError:
        line = None
        tb = exc.__traceback__
        while tb is not None:
            if tb.tb_frame.f_code.co_filename == self._filename:
                line = tb.tb_lineno
            tb = tb.tb_next
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        where = f" (line {line})" if line is not None else ""
        return ProgramRuntimeError(f"feature {self.fqn}: program raised {detail}{where}")

    def _bad(self, out: object, problem: str) -> ProgramRuntimeError:
        return ProgramRuntimeError(
            f"feature {self.fqn}: program returned {_describe(out)}: {problem}"
        )

    def _value(self, value: Any, out: object) -> Any:
        fast, v = self._fast_type, value  # ``v`` is not narrowed to ``fast``
        if value is None or (
            type(value) is fast and (fast is not int or INT64_MIN <= v <= INT64_MAX)
        ):
            return value
        try:
            return self.primitive.check(value)
        except RaptorError as exc:
            raise self._bad(out, f"the value does not match spec.primitive ({exc})") from None

    def _unpack(self, out: tuple[Any, ...]) -> ProgramResult:
        n = len(out)
        if n == 3:
            value, keys, ts = out
            if isinstance(keys, datetime) and (type(ts) in _KEYS_TYPES or isinstance(ts, Mapping)):
                keys, ts = ts, keys  # upstream (value, timestamp, keys): unambiguous by type
        elif n == 2:
            value, keys, ts = out[0], out[1], None
        else:
            raise self._bad(
                out,
                "a tuple is a return form (value, keys) or (value, keys, timestamp); "
                "return a list for a list value",
            )
        if keys is not None:  # the common forms inline: this is the ingestion hot path
            names = self.keys
            keys = (
                {names[0]: keys} if type(keys) is str and len(names) == 1 else self._keys(keys, out)
            )
        if ts is not None and (type(ts) is not datetime or ts.tzinfo is not UTC):
            ts = self._ts(ts, out)
        return ProgramResult(self._value(value, out), keys, ts)

    def _keys(self, keys: object, out: object) -> dict[str, str]:
        if type(keys) is dict or isinstance(keys, Mapping):
            result: dict[str, str] = {}
            for k, v in keys.items():
                if type(v) is str and type(k) is str:
                    result[k] = v
                elif isinstance(k, str) and _is_key_value(v):
                    result[k] = str(v)
                else:
                    raise self._bad(out, f"key {k!r}: {_describe(v)} is not a str or int")
            return result
        if _is_key_value(keys):
            if len(self.keys) != 1:
                raise self._bad(
                    out,
                    f"a bare key {keys!r} needs a feature with exactly one key, but the feature "
                    f"has keys ({', '.join(self.keys)}); return a dict of keys",
                )
            return {self.keys[0]: str(keys)}
        hint = ""
        if isinstance(keys, datetime):
            hint = (
                "; return (value, keys, timestamp) — (value, timestamp, keys) is accepted only "
                "with keys as a str or dict"
            )
        raise self._bad(
            out, f"keys must be a dict, a bare str/int or None, got {_describe(keys)}{hint}"
        )

    def _ts(self, ts: object, out: object) -> datetime:
        if not isinstance(ts, datetime):
            raise self._bad(out, f"the timestamp must be a datetime or None, got {_describe(ts)}")
        if ts.tzinfo is None:
            return ts.replace(tzinfo=UTC)
        return ts if ts.tzinfo is UTC else ts.astimezone(UTC)


_KEYS_TYPES = (str, dict)


def _is_key_value(v: object) -> bool:
    return isinstance(v, str) or (isinstance(v, int) and not isinstance(v, bool))
