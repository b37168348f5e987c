"""Where feature programs run: :class:`ProgramExecutor`, a thread pool under a hard time limit,
and its watchdog. What a program sees and returns (:class:`~raptor.engine.context.Context`,
:class:`~raptor.engine.context.Program`, :class:`~raptor.engine.context.ProgramResult`) lives in
:mod:`raptor.engine.context`; the engine and the stream runners submit work here.

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
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from time import monotonic
from typing import Any

from raptor.engine.context import Context, Program, ProgramResult
from raptor.errors import ProgramRuntimeError, RaptorError

__all__ = ["ProgramExecutor"]

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
