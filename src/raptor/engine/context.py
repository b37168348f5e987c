"""The runtime side of feature programs: what a program sees (:class:`Context`), the loaded
:class:`Program` and what it gives back (:class:`ProgramResult`), and where it runs under a hard
time limit (:class:`ProgramExecutor`). Loading and checking live in :mod:`raptor.engine.programs`.

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

:class:`ProgramExecutor` runs programs in a ``ThreadPoolExecutor``. The hard limit is enforced by
one **watchdog thread** owned by the executor, independently of asyncio: cancelling the task that
awaits :meth:`ProgramExecutor.run` never stops the computation (the engine lets it finish in the
background after the soft timeout), yet a runaway program is still interrupted:
``PyThreadState_SetAsyncExc`` injects a private ``BaseException`` into the worker (so ``except
Exception`` in the program does not swallow it), re-injected every ``retry_interval`` while the
program keeps running; the worker turns it into a ProgramRuntimeError and serves the pool on.

Injection protocol (what keeps the pool healthy, at a few stores per call): a worker registers
a whole job (one hop: one call, or a batch of rows) under the executor's lock (a C lock:
entering it runs no Python code), then before each call only stores ``(index, start)``; the
watchdog reads it and injects in one step, with no Python call in between, after recording
the call it meant (``victim``). So an interrupt lands in that call or in the loop's bookkeeping
just after it; the worker tells the cases apart (the call's outcome recorded or not, the victim
or a later call), reports the victim as timed out and runs a later call it cut short again. The
handler's first store stops further injections; clearing a pending interrupt and unregistering
happen under the lock. Limits: code
blocked in C (``time.sleep``, a socket read) is interrupted only when it returns to Python;
after ``grace`` seconds its caller gets the error anyway while the thread stays busy. Getters
passed to :class:`Context` must tolerate being interrupted (waiting on a future does).
Deadlines use the monotonic clock (timeouts, not event time).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from time import monotonic
from typing import Any

from raptor.api.names import Selector
from raptor.api.primitives import INT64_MAX, INT64_MIN, Primitive
from raptor.errors import ProgramRuntimeError, RaptorError

__all__ = ["Context", "Getter", "Program", "ProgramExecutor", "ProgramResult"]

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
    :class:`ProgramExecutor` to run it in a worker under a hard time limit.
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
        try:
            out: Any = self._func(row, ctx)
        except RaptorError:
            raise
        except (Exception, SystemExit) as exc:
            raise self._raised(exc) from exc
        if isinstance(out, tuple):
            return self._unpack(out)
        return ProgramResult(self._value(out, out))

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


# --------------------------------------------------------------------------------------------
# Executor

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


class _Interrupt(BaseException):
    """Injected into a worker whose program passed its hard limit (never escapes a worker)."""


_INTERRUPT = ctypes.py_object(_Interrupt)
Outcome = ProgramResult | RaptorError
_CLOSED_BEFORE = "the program executor closed before the program ran"
Call = tuple[Program, Mapping[str, Any], Context]
_IDLE = (-1, math.inf)
_UNSET: Any = object()


class _Job:
    """One executor hop: ``n`` calls run in order in one worker; the outcomes settle
    ``future``. Call ``i`` is ``programs[i]`` (or ``program`` for every call) on ``rows[i]``
    with ``ctxs[i]`` (or ``ctx``); ``bare``: outcomes of :meth:`Program.evaluate` instead of
    :meth:`Program.run`."""

    __slots__ = (
        "bare",
        "ctx",
        "ctxs",
        "future",
        "limit",
        "loop",
        "outcomes",
        "program",
        "programs",
        "rows",
        "settled",
        "single",
    )

    def __init__(
        self,
        program: Program | Sequence[Program],
        rows: Sequence[Mapping[str, Any]],
        ctx: Context | Sequence[Context],
        limit: float,
        loop: asyncio.AbstractEventLoop,
        *,
        single: bool = False,
        bare: bool = False,
    ) -> None:
        self.program: Program | None = None
        self.programs: Sequence[Program] | None = None
        if isinstance(program, Program):
            self.program = program
        else:
            self.programs = program
        self.ctx: Context | None = None
        self.ctxs: Sequence[Context] | None = None
        if isinstance(ctx, Context):
            self.ctx = ctx
        else:
            self.ctxs = ctx
        self.rows = rows
        self.limit = limit
        self.loop = loop
        self.future: asyncio.Future[Any] = loop.create_future()
        self.outcomes: list[Any] = [_UNSET] * len(rows)
        self.settled = False
        self.single = single
        self.bare = bare

    def program_at(self, i: int) -> Program:
        if self.programs is not None:
            return self.programs[i]
        assert self.program is not None
        return self.program


class _Slot:
    """A job being run by a worker thread; registered with the watchdog meanwhile.

    ``current`` is ``(index, monotonic start)`` of the running call, or ``_IDLE`` — written by
    the worker alone, one store per call, read by the watchdog; ``victim`` is the call the
    watchdog interrupted (-1: none), written under the lock; ``cutoff``: :meth:`close` time."""

    __slots__ = ("current", "cutoff", "job", "tid", "victim")

    def __init__(self, job: _Job, thread_id: int) -> None:
        self.job = job
        self.tid = ctypes.c_ulong(thread_id)
        self.current: tuple[int, float] = _IDLE
        self.victim = -1
        self.cutoff = math.inf


def _settle(job: _Job, outcomes: list[Any]) -> None:
    """In the event loop: resolve the awaiting future (unless it was cancelled)."""
    fut = job.future
    if fut.done():
        return
    if not job.single:
        fut.set_result(outcomes)
    elif isinstance(outcomes[0], ProgramResult):
        fut.set_result(outcomes[0])
    else:
        fut.set_exception(outcomes[0])


class ProgramExecutor:
    """Runs programs in a thread pool (``max_workers``, default 8) under a hard time limit.

    ``grace``: how long after the hard limit the awaiting caller waits for an interrupted
    program to stop before it is given the error regardless. Call :meth:`close` when done.
    """

    def __init__(
        self, max_workers: int = 8, *, grace: float = 1.0, retry_interval: float = 0.05
    ) -> None:
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="raptor-program")
        self._grace = grace
        self._retry = retry_interval
        self._lock = threading.Lock()  # a C lock: entering it runs no Python code
        self._running: set[_Slot] = set()
        self._next_wake = math.inf
        self._wake = threading.Event()
        self._closed = False
        self._watchdog = threading.Thread(
            target=self._watch, name="raptor-program-watchdog", daemon=True
        )
        self._watchdog.start()

    async def run(
        self, program: Program, row: Mapping[str, Any], ctx: Context, hard_limit: float
    ) -> ProgramResult:
        """Run ``program.run(row, ctx)`` in a worker; raise ProgramRuntimeError past
        ``hard_limit`` seconds (``math.inf``: no limit). Cancelling the caller does not stop
        the computation."""
        job = self._submit(program, [row], ctx, hard_limit, single=True)
        result: ProgramResult = await job.future
        return result

    async def run_many(
        self, program_calls: Iterable[tuple[Program, Mapping[str, Any], Context]], hard_limit: float
    ) -> list[ProgramResult | RaptorError]:
        """Run a batch of ``(program, row, ctx)`` in one worker hop, in order, each call under
        ``hard_limit``. Returns one outcome per call: its result, or the error it raised (a
        failing call does not fail the batch)."""
        calls = list(program_calls)
        if not calls:
            return []
        programs, rows, ctxs = ([c[0] for c in calls], [c[1] for c in calls], [c[2] for c in calls])
        job = self._submit(programs, rows, ctxs, hard_limit)
        outcomes: list[ProgramResult | RaptorError] = await job.future
        return outcomes

    async def run_rows(
        self,
        program: Program,
        rows: Sequence[Mapping[str, Any]],
        ctx: Context | Sequence[Context],
        hard_limit: float,
    ) -> list[Any]:
        """One program on many rows in one worker hop, in order, each call under
        ``hard_limit`` — the ingestion path. ``ctx`` is one context per row, or one for every
        row (for a program that does not use it, see :attr:`Program.uses_context`). Outcomes
        are those of :meth:`Program.evaluate` (a bare value, ``None``, or a
        :class:`ProgramResult`) or the error the call raised."""
        if not rows:
            return []
        job = self._submit(program, rows, ctx, hard_limit, bare=True)
        outcomes: list[Any] = await job.future
        return outcomes

    def close(self) -> None:
        """Stop accepting work, drop queued calls (their callers get an error), interrupt the
        running ones. Does not wait for the worker threads."""
        with self._lock:
            self._closed = True
            now = monotonic()
            for slot in self._running:
                slot.cutoff = now
            self._wake.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- internals ----------------------------------------------------------------------------

    def _submit(
        self,
        program: Program | Sequence[Program],
        rows: Sequence[Mapping[str, Any]],
        ctx: Context | Sequence[Context],
        hard_limit: float,
        *,
        single: bool = False,
        bare: bool = False,
    ) -> _Job:
        if not hard_limit > 0:
            raise ValueError(f"hard_limit must be positive seconds, got {hard_limit!r}")
        if self._closed:
            raise RuntimeError("ProgramExecutor is closed")
        loop = asyncio.get_running_loop()
        job = _Job(program, rows, ctx, hard_limit, loop, single=single, bare=bare)
        self._pool.submit(self._work, job).add_done_callback(lambda f: self._dropped(f, job))
        return job

    def _dropped(self, f: Future[None], job: _Job) -> None:
        if f.cancelled():  # queued when the executor closed
            self._deliver(job, [ProgramRuntimeError(_CLOSED_BEFORE)] * len(job.rows))

    def _deliver(self, job: _Job, outcomes: list[Any]) -> None:
        with self._lock:
            if job.settled:
                return
            job.settled = True
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            job.loop.call_soon_threadsafe(_settle, job, outcomes)

    def _work(self, job: _Job) -> None:
        """In a worker thread: run the job's calls; never raises.

        Injection protocol (see the module docstring): the job is registered with the
        watchdog once; each call only stores ``slot.current``. The watchdog sets ``victim``
        and injects in one step (no Python call in between, so the worker cannot move on in
        the meantime); an interrupt therefore lands in the call it was meant for, or in this
        loop's bookkeeping after that call — then the next call, not yet run or cut short by
        it, is run (again). The handler's first act stops further injections."""
        slot = _Slot(job, threading.get_ident())
        n = len(job.rows)
        with self._lock:
            closed = self._closed
            if not closed:
                self._running.add(slot)
                if monotonic() + job.limit < self._next_wake:
                    self._wake.set()
        if closed:  # the watchdog may be gone: run nothing new
            self._deliver(job, [ProgramRuntimeError(_CLOSED_BEFORE)] * n)
            return
        run = Program.evaluate if job.bare else Program.run
        program, programs, rows, ctx, ctxs = job.program, job.programs, job.rows, job.ctx, job.ctxs
        outcomes = job.outcomes
        i = 0
        interrupted = False
        while True:
            try:
                if interrupted:
                    interrupted = False
                    i = self._interrupted(slot, i)
                while i < n:
                    if job.settled or self._closed:
                        break
                    p: Any = program if programs is None else programs[i]
                    c: Any = ctx if ctxs is None else ctxs[i]
                    slot.current = (i, monotonic())
                    try:
                        out = run(p, rows[i], c)
                    except RaptorError as exc:
                        out = exc
                    except _Interrupt:
                        raise
                    except BaseException as exc:  # a worker must survive anything
                        out = ProgramRuntimeError(f"feature {p.fqn}: program failed: {exc!r}")
                    if slot.victim == i:  # the program swallowed the interrupt and returned
                        slot.current = _IDLE
                        self._calm(slot)
                        out = self._stopped(p, job.limit)
                    outcomes[i] = out
                    i += 1
                slot.current = _IDLE
                with self._lock:  # the watchdog injects nothing into an unregistered slot
                    self._running.discard(slot)
                    if slot.victim != -1:  # drop an interrupt injected but not yet delivered
                        _set_async_exc(slot.tid, None)
                break
            except _Interrupt:
                slot.current = _IDLE  # first (no call before it): no more injections
                interrupted = True
        if i < n and not job.settled:  # closed meanwhile
            for j in range(i, n):
                if outcomes[j] is _UNSET:
                    outcomes[j] = ProgramRuntimeError(_CLOSED_BEFORE)
        self._deliver(job, outcomes)

    def _calm(self, slot: _Slot) -> None:
        """After an interrupt was handled: clear one injected but not yet delivered."""
        with self._lock:
            if slot.victim != -1:
                slot.victim = -1
                _set_async_exc(slot.tid, None)

    def _interrupted(self, slot: _Slot, i: int) -> int:
        """An interrupt reached the worker loop at call ``i``: the call to go on from."""
        victim = slot.victim
        self._calm(slot)
        job = slot.job
        outcomes = job.outcomes
        if i >= len(outcomes):
            return i  # while unregistering: finish that
        if outcomes[i] is not _UNSET:
            return i + 1  # after the call had finished and was recorded
        if victim == i:
            outcomes[i] = self._stopped(job.program_at(i), job.limit)
            return i + 1
        return i  # meant for a call that had finished: run this one (again)

    def _stopped(self, program: Program, limit: float, stuck: bool = False) -> ProgramRuntimeError:
        if self._closed:
            text = f"feature {program.fqn}: the program executor closed while the program ran"
        else:
            text = f"feature {program.fqn}: program exceeded its hard time limit of {limit:g}s"
        if stuck:
            text += " and did not stop when interrupted (blocked outside Python code?)"
        return ProgramRuntimeError(text)

    def _watch(self) -> None:
        """The watchdog thread: interrupt calls past their deadline, abandon stuck ones.

        Workers do not tell it when a call starts: it sleeps until the earliest deadline it
        knows of (a registered job's next call cannot end its limit sooner than ``now +
        limit``), and finds later calls there."""
        retry, grace = self._retry, self._grace
        while True:
            with self._lock:
                if self._closed and not self._running:
                    return
                now = monotonic()
                wake = math.inf
                for slot in self._running:
                    limit = slot.job.limit
                    index, started = slot.current
                    deadline = started + limit
                    cutoff = slot.cutoff
                    if cutoff < deadline:
                        deadline = cutoff
                    if index < 0:  # between calls: the next one starts after now
                        nxt = now + limit if cutoff > now else now + retry
                        if nxt < wake:
                            wake = nxt
                        continue
                    if now < deadline:
                        if deadline < wake:
                            wake = deadline
                        continue
                    # No call between reading ``current`` and injecting: the worker is still
                    # in call ``index`` (or just after it) when the interrupt is set.
                    slot.victim = index
                    _set_async_exc(slot.tid, _INTERRUPT)
                    if now + retry < wake:
                        wake = now + retry
                    if now >= deadline + grace and not slot.job.settled:
                        self._abandon(slot, index)
                self._next_wake = wake
                self._wake.clear()
            self._wake.wait(None if wake == math.inf else max(0.0, wake - now))

    def _abandon(self, slot: _Slot, index: int) -> None:
        """Under the lock: answer the caller of a call that does not stop."""
        job = slot.job
        outcomes: list[Any] = job.outcomes[:index]
        outcomes.append(self._stopped(job.program_at(index), job.limit, stuck=True))
        skipped = ProgramRuntimeError("not run: an earlier program in the batch is stuck")
        outcomes.extend([skipped] * (len(job.rows) - len(outcomes)))
        job.settled = True
        with contextlib.suppress(RuntimeError):
            job.loop.call_soon_threadsafe(_settle, job, outcomes)
