"""Per event: payload → row → every bound feature's program → state mutations (SPEC 4.5).

:class:`EventProcessor` is built once per (DataSource, catalog) and turns a batch of
:class:`~raptor.runners.source.Message` into, per message, either the state mutations it
causes or a :class:`~raptor.runners.source.DeadLetter` with a :class:`Reason`:

1. **decode** — the body is a JSON object (msgspec); a Redis entry without a payload field
   is its flat string fields. Anything else is ``undecodable``. With an inline JSON schema
   on the DataSource (``spec.schema`` as an object, or JSON text of one) the row is validated
   (``schema``); a schema given by reference (a URL, a ``.proto#Message``) is not fetched and
   not enforced (logged once).
2. **flatten** nested objects to ``a.b`` keys while keeping the nested form
   (:func:`raptor.engine.ingest.flatten_row`, the same code the push API uses).
3. **event time** from ``timestampField`` (RFC 3339 or epoch seconds/ms). Missing:
   ``missing-timestamp`` unless the DataSource sets ``timestamp_fallback: broker``, which uses
   the broker's time and counts it (``raptor_ingest_broker_time_total``); unparsable:
   ``bad-timestamp``. A DataSource without ``timestampField`` uses the broker time (or the
   clock when the broker has none).
4. **keys** from the row by each feature's key names (``missing-key``), then every program
   bound to the DataSource runs with ``ctx.timestamp`` = event time, in the engine's program
   executor: one worker hop per feature and batch
   (:meth:`~raptor.engine.executor.ProgramExecutor.run_rows`), each row under the engine's
   hard limit — a runaway row is stopped and dead-lettered, the others run. A program that
   never names its ``ctx`` parameter gets one shared context instead of one per row. A
   program that raises is ``program-error``; one whose value does not match
   ``spec.primitive`` is ``wrong-type``.
5. **mutations** with ``Update`` semantics (SPEC 4.4): windowed features add to the window,
   list features append, scalars set; scalar writes older than ``staleness`` are dropped
   from online state.

An event is all-or-nothing: if any of its features fails, none of its mutations is written
and the whole event goes to the dead letter, so replaying a dead letter never double-counts.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from raptor.api.assets import DataSourceDef
from raptor.api.names import encode_entity
from raptor.api.timeutil import EPOCH, from_micros, parse_timestamp, to_micros
from raptor.api.windows import WindowSpec
from raptor.engine.catalog import FeatureRuntime
from raptor.engine.engine import Engine
from raptor.engine.ingest import flatten_row
from raptor.engine.programs import Context, ProgramResult
from raptor.errors import InvalidArgument, MissingKeyError, RaptorError
from raptor.runners.source import DeadLetter, Message
from raptor.state import ValueWrite, WindowAdd, WriteOp

__all__ = ["EventOutcome", "EventProcessor", "Reason", "event_time"]

log = logging.getLogger("raptor.runners")

_decode = msgspec.json.decode


class Reason(enum.StrEnum):
    """Why a message went to the dead letter (the ``reason`` label of the metric)."""

    UNDECODABLE = "undecodable"
    SCHEMA = "schema"
    MISSING_KEY = "missing-key"
    MISSING_TIMESTAMP = "missing-timestamp"
    BAD_TIMESTAMP = "bad-timestamp"
    PROGRAM_ERROR = "program-error"
    WRONG_TYPE = "wrong-type"


Mutation = ValueWrite | WindowAdd


@dataclass(slots=True)
class EventOutcome:
    """What one message became: its mutations, or the dead letter (then ``mutations`` is
    empty). ``broker_time_used`` flags the fallback event time; ``event_time`` is in µs."""

    message: Message
    mutations: list[Mutation]
    dead: DeadLetter | None = None
    broker_time_used: bool = False
    event_time: int | None = None


_fromisoformat = datetime.fromisoformat
_ONE_US = timedelta(microseconds=1)


def event_time(stamp: object) -> tuple[int, datetime]:
    """``(epoch µs, aware UTC datetime)`` of a timestamp field (SPEC 8: RFC 3339, or epoch
    seconds / milliseconds as a number). Raises ``ValueError``. The common RFC 3339 string
    takes one ``fromisoformat`` call; everything else goes through
    :func:`raptor.api.timeutil.parse_timestamp`.

    >>> event_time("2024-06-01T00:00:00.5Z")[0]
    1717200000500000
    """
    if type(stamp) is str:
        try:
            dt = _fromisoformat(stamp)
        except ValueError:
            dt = parse_timestamp(stamp)  # its error message names the accepted forms
        else:
            tz = dt.tzinfo
            if tz is None:
                dt = dt.replace(tzinfo=UTC)
            elif tz is not UTC:
                dt = dt.astimezone(UTC)
    else:
        dt = parse_timestamp(stamp)
    return (dt - EPOCH) // _ONE_US, dt


class _Poison(Exception):
    def __init__(self, reason: Reason, error: str) -> None:
        self.reason = reason
        self.error = error


def _no_lookup(selector: str, keys: Mapping[str, str] | None) -> tuple[Any, datetime | None]:
    raise InvalidArgument(
        f"ctx.get_feature({selector!r}) is not available while ingesting events; "
        "use a sourceless feature to combine features"
    )


def _schema_validator(source: DataSourceDef) -> Any:
    """A ``jsonschema_rs`` validator for an inline object schema, else None (logged)."""
    schema = source.schema
    if isinstance(schema, str):
        text = schema.strip()
        if not text.startswith("{"):
            if text:
                log.info(
                    "DataSource %s: schema %r is a reference; rows are not validated against it",
                    source.fqn,
                    text[:100],
                )
            return None
        try:
            schema = json.loads(text)
        except ValueError as exc:
            log.warning(
                "DataSource %s: schema is not valid JSON (%s); not enforced", source.fqn, exc
            )
            return None
    if not isinstance(schema, Mapping):
        return None
    try:
        import jsonschema_rs
    except ImportError as exc:
        raise ImportError(
            f"DataSource {source.fqn} has a JSON schema; validating it needs jsonschema-rs: "
            "pip install 'raptor[streaming]'"
        ) from exc
    try:
        return jsonschema_rs.validator_for(dict(schema))
    except Exception as exc:  # a broken schema is reported, not enforced
        log.warning("DataSource %s: invalid JSON schema (%s); not enforced", source.fqn, exc)
        return None


_ENTITY_CACHE = 100_000  # entity ids remembered per feature


class _NoType:
    """Stands for "no fast type": ``type(x) is _NoType`` is never true."""


_new = object.__new__
_WINDOW_ADD_SLOTS = vars(WindowAdd)
_set_fqn = _WINDOW_ADD_SLOTS["fqn"].__set__
_set_entity = _WINDOW_ADD_SLOTS["entity"].__set__
_set_window = _WINDOW_ADD_SLOTS["window"].__set__
_set_events = _WINDOW_ADD_SLOTS["events"].__set__


def _window_add(fqn: str, entity: str, window: WindowSpec, events: Any) -> WindowAdd:
    """``WindowAdd(...)`` through its slot descriptors: a third of the frozen dataclass
    ``__init__``'s cost, on the hot path (one per event and windowed feature)."""
    add: WindowAdd = _new(WindowAdd)
    _set_fqn(add, fqn)
    _set_entity(add, entity)
    _set_window(add, window)
    _set_events(add, events)
    return add


class _Bound:
    """What the hot loop needs of one bound feature, looked up once."""

    __slots__ = (
        "entities",
        "fast",
        "fqn",
        "is_list",
        "keys",
        "namespace",
        "numeric",
        "policy",
        "program",
        "single",
        "staleness",
        "uses_context",
        "window",
    )

    def __init__(self, rt: FeatureRuntime) -> None:
        defn = rt.defn
        self.fqn = rt.fqn
        self.namespace = defn.namespace
        self.keys = defn.keys
        self.program = rt.program
        assert rt.program is not None
        self.uses_context = rt.program.uses_context
        # a bare result of this type is a checked value (Program.evaluate); None: no such type
        self.fast: type | None = rt.program._fast_type or _NoType
        self.window = defn.window if defn.aggr else None
        self.numeric = defn.primitive.numeric
        self.is_list = defn.primitive.is_list
        self.staleness = defn.staleness
        self.policy = rt.policy
        # the key name of a single-key feature (the hot loop keeps the bare value), else None
        self.single: str | None = self.keys[0] if len(self.keys) == 1 else None
        # entity id by key value, for single-key features (the hot loop skips encoding)
        self.entities: dict[str, str] | None = {} if self.single is not None else None

    def missing(self, name: str) -> str:
        return f"feature {self.fqn} needs key {name!r} (keys: {', '.join(self.keys)})"

    def pick(self, rows: list[dict[str, Any]], live: list[EventOutcome]) -> list[Any] | None:
        """The key value (single-key feature, a str) or keys dict of every row; None when some
        rows miss a key — their events are then dead (``missing-key``)."""
        name = self.single
        if name is not None:
            picked: list[Any] = [row.get(name) for row in rows]
            if None not in picked and set(map(type, picked)) == {str}:
                return picked
            ok = True
            for j, v in enumerate(picked):
                if v is None:
                    live[j].dead = DeadLetter(
                        live[j].message, Reason.MISSING_KEY.value, self.missing(name)
                    )
                    ok = False
                elif type(v) is not str:
                    picked[j] = str(v)
            return picked if ok else None
        out: list[Any] = []
        ok = True
        for j, row in enumerate(rows):
            try:
                out.append(self.keys_of(row))
            except _Poison as p:
                live[j].dead = DeadLetter(live[j].message, p.reason.value, p.error)
                out.append(None)
                ok = False
        return out if ok else None

    def keys_of(self, row: Mapping[str, Any]) -> dict[str, str]:
        """The keys of a multi-key feature in ``row``. Raises ``_Poison``."""
        keys: dict[str, str] = {}
        for name in self.keys:
            v = row.get(name)
            if v is None:
                raise _Poison(Reason.MISSING_KEY, self.missing(name))
            keys[name] = v if type(v) is str else str(v)
        return keys

    def entity_of(self, pick: Any) -> str:
        """The entity id of a key value (single-key feature, cached) or a keys dict."""
        cache = self.entities
        if cache is None:
            return encode_entity(self.keys, pick, self.fqn)
        entity = cache.get(pick)
        if entity is None:
            if len(cache) >= _ENTITY_CACHE:
                cache.clear()
            assert self.single is not None
            entity = cache[pick] = encode_entity(self.keys, {self.single: pick}, self.fqn)
        return entity


class EventProcessor:
    """Turns messages of one DataSource into mutations (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        source: DataSourceDef,
        *,
        broker_time_fallback: bool = False,
        payload_field: str | None = None,
    ) -> None:
        self.engine = engine
        self.source = source
        self.features: list[FeatureRuntime] = [
            f for f in engine.catalog.features_of(source.fqn) if f.program is not None
        ]
        self.bound = [_Bound(f) for f in self.features]
        self.ts_field = source.timestamp_field
        self.fallback = broker_time_fallback
        self.payload_field = payload_field
        self.validator = _schema_validator(source)

    def decode(self, message: Message, now: int) -> tuple[dict[str, Any], int, datetime, bool]:
        """The flattened row, its event time (µs and aware UTC datetime) and whether the
        broker time was used. Raises ``_Poison``."""
        payload = message.payload
        if isinstance(payload, bytes):
            try:
                raw = _decode(payload)
            except (msgspec.DecodeError, UnicodeDecodeError) as exc:
                raise _Poison(Reason.UNDECODABLE, f"the message is not JSON: {exc}") from None
        else:
            raw = dict(payload)
        if type(raw) is not dict:
            raise _Poison(Reason.UNDECODABLE, f"expected a JSON object, got {type(raw).__name__}")
        if self.validator is not None:
            errors = [str(e) for e in self.validator.iter_errors(raw)]
            if errors:
                raise _Poison(Reason.SCHEMA, "; ".join(errors[:5]))
        row = raw
        # Only a body with a second "{" can hold a nested object (a C-speed scan first).
        if type(payload) is not bytes or payload.find(b"{", 1) != -1:
            for v in raw.values():
                if type(v) is dict:
                    row = flatten_row(raw)
                    break
        ts_field = self.ts_field
        if ts_field:
            stamp = row.get(ts_field)
            if stamp is None:
                broker = message.broker_time
                if self.fallback and broker is not None:
                    return row, broker, from_micros(broker), True
                raise _Poison(
                    Reason.MISSING_TIMESTAMP, f"the row has no timestamp field {ts_field!r}"
                )
            try:
                t, when = event_time(stamp)
            except (ValueError, OverflowError) as exc:
                raise _Poison(Reason.BAD_TIMESTAMP, f"field {ts_field!r}: {exc}") from None
            return row, t, when, False
        broker = message.broker_time
        if broker is not None:
            return row, broker, from_micros(broker), True
        return row, now, from_micros(now), False

    async def process(self, messages: Sequence[Message]) -> list[EventOutcome]:
        """One outcome per message, in order.

        Every message is decoded and keyed first (a poison message runs no program); then
        each feature's program runs on all the live rows in one executor hop; then the
        outcomes become mutations, event by event."""
        now = self.engine.clock.now_micros()
        bound = self.bound
        outcomes: list[EventOutcome] = []
        live: list[EventOutcome] = []  # events whose programs run, in order
        rows: list[dict[str, Any]] = []
        times: list[int] = []
        whens: list[datetime] = []
        decode = self.decode
        for msg in messages:
            out = EventOutcome(msg, [])
            outcomes.append(out)
            try:
                row, t, when, used = decode(msg, now)
            except _Poison as p:
                out.dead = DeadLetter(msg, p.reason.value, p.error)
                continue
            if used:
                out.broker_time_used = True
            out.event_time = t
            live.append(out)
            rows.append(row)
            times.append(t)
            whens.append(when)
        # Keys, feature by feature; an event missing one is dead for every feature.
        picks: list[list[Any]] = []
        for b in bound:
            picked = b.pick(rows, live)
            if picked is None:  # some events were missing keys: drop them, start over
                kept = [j for j, o in enumerate(live) if o.dead is None]
                live = [live[j] for j in kept]
                rows = [rows[j] for j in kept]
                times = [times[j] for j in kept]
                whens = [whens[j] for j in kept]
                picks = [[p[j] for j in kept] for p in picks]
                picked = b.pick(rows, live)
                assert picked is not None
            picks.append(picked)
        if not live:
            return outcomes
        at = from_micros(now)
        runs = []
        for b, picked in zip(bound, picks, strict=True):
            ctx: Context | list[Context]
            if not b.uses_context:  # one context for the batch: the program never reads it
                ctx = Context(b.fqn, b.namespace, {}, at, _no_lookup, _no_lookup)
            else:
                fqn, ns, single = b.fqn, b.namespace, b.single
                ctx = [
                    Context(fqn, ns, {single: key} if single is not None else dict(key), when,
                            _no_lookup, _no_lookup)
                    for key, when in zip(picked, whens, strict=True)
                ]  # fmt: skip
            runs.append(self._run(b, rows, ctx))
        results = await asyncio.gather(*runs) if len(runs) > 1 else [await runs[0]]
        for b, picked, res in zip(bound, picks, results, strict=True):
            self._mutations(b, live, times, picked, res, now)
        return outcomes

    def _mutations(
        self,
        b: _Bound,
        live: list[EventOutcome],
        times: list[int],
        picks: list[Any],
        results: list[Any],
        now: int,
    ) -> None:
        """The outcome of one feature's program on every live event → mutations."""
        fast = b.fast
        window = b.window
        numeric = b.numeric
        fqn = b.fqn
        cache = b.entities
        value: Any
        for j, res in enumerate(results):
            out = live[j]
            if out.dead is not None:
                continue
            ts = times[j]
            if type(res) is fast:  # a bare value of the primitive's type (the common case)
                value = res
                entity = None
                if cache is not None:
                    entity = cache.get(picks[j])
                if entity is None:
                    entity = b.entity_of(picks[j])
            elif res is None:
                continue
            elif type(res) is ProgramResult:
                value = res.value
                if value is None:
                    continue
                if res.timestamp is not None:
                    ts = to_micros(res.timestamp)
                if res.keys is not None:
                    base = picks[j]
                    keys = {b.single: base} if b.single is not None else dict(base)
                    keys.update(res.keys)
                    entity = encode_entity(b.keys, keys, fqn)
                else:
                    entity = b.entity_of(picks[j])
            elif isinstance(res, RaptorError):
                text = str(res)
                reason = Reason.WRONG_TYPE if "spec.primitive" in text else Reason.PROGRAM_ERROR
                if isinstance(res, MissingKeyError):
                    reason = Reason.MISSING_KEY
                out.dead = DeadLetter(out.message, reason.value, text)
                out.mutations.clear()
                continue
            else:  # a bare value of another type (lists, datetimes: checked already)
                value = res
                entity = b.entity_of(picks[j])
            if window is not None:
                out.mutations.append(
                    _window_add(fqn, entity, window, ((ts, value if numeric else 1),))
                )
            elif b.staleness and now - ts > b.staleness:
                continue  # too old for online state (SPEC 4.4)
            elif b.is_list:  # Update on a list appends; a returned list appends each element
                for v in value:
                    out.mutations.append(ValueWrite(fqn, entity, WriteOp.APPEND, v, ts, b.policy))
            else:
                out.mutations.append(ValueWrite(fqn, entity, WriteOp.SET, value, ts, b.policy))

    async def _run(self, b: _Bound, rows: list[dict[str, Any]], ctx: Any) -> list[Any]:
        """One feature's program on every row, in one executor hop."""
        engine = self.engine
        limit = engine.settings.program_hard_limit
        program = b.program
        assert program is not None
        results = await engine.executor.run_rows(program, rows, ctx, limit)
        # A program stuck past its hard limit leaves the rest of the hop "not run": run them
        # again (the stuck call itself is reported as its own error).
        while True:
            skipped = [
                i
                for i, r in enumerate(results)
                if isinstance(r, RaptorError) and str(r).startswith("not run:")
            ]
            if not skipped:
                return results
            again = await engine.executor.run_rows(
                program,
                [rows[i] for i in skipped],
                ctx if isinstance(ctx, Context) else [ctx[i] for i in skipped],
                limit,
            )
            for i, r in zip(skipped, again, strict=True):
                results[i] = r
