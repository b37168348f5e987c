"""The consume→update loop of one streaming DataSource (:class:`StreamRunner`).

Batches go through three overlapping stages, in order — fetching batch N+2, processing N+1,
committing N (state write, dead letters, ack) — with at most one batch in each, so memory is
bounded and backpressure reaches the broker when state is slow (nothing more is fetched)::

    fetch ─► decode/flatten/keys/event time/programs ─► state write (+ positions) ─►
            dead letters ─► ack/commit

Commits run strictly one after the other, in batch order. A source that delivers the next
batch only after the ack (JetStream's one batch in flight) runs the stages one by one.

**Delivery**: nothing is acknowledged before its state write (and, for poison messages, its
dead letter) succeeded; failures are retried with exponential backoff (``retry_initial`` up to
``retry_max`` seconds) and counted; the runner reports not-ready while they last.

**Exactly-once effect**: with a state store that implements
:class:`raptor.state.CheckpointStore` and a source that gives positions, every mutation is
written with its event's ``(partition, position)`` through
:meth:`~raptor.state.CheckpointStore.apply_checkpointed`: state records, atomically with each
(feature, entity)'s update, the last position applied to it, and skips what it already holds.
A batch re-delivered after a crash (``kill -9`` between the write and the ack) is therefore
skipped where it landed and applied where it did not. Pub/Sub messages have no position: they
are at-least-once (see ``docs/ingestion.md``).

**Poison isolation**: a state write refused for a value (``ValueTypeError``) is retried event by
event; the event that fails goes to the dead letter as ``wrong-type``, the others are written.

**Shutdown**: :meth:`StreamRunner.run` returns after ``stop`` is set and the batch in flight (and
one already prefetched) is written, dead-lettered and acknowledged — within ``drain_timeout``
seconds, after which unacknowledged messages are left for re-delivery.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter

from raptor.api.assets import DataSourceDef
from raptor.engine.engine import Engine
from raptor.errors import RaptorError, ValueTypeError
from raptor.runners.config import Secrets, StreamConfig, stream_config
from raptor.runners.dead_letters import DeadLetterSink, choose_sink
from raptor.runners.events import EventOutcome, EventProcessor, Mutation, Reason
from raptor.runners.metrics import RunnerMetrics
from raptor.runners.source import (
    DeadLetter,
    Message,
    Source,
    SourceSettings,
    open_source,
)
from raptor.state import CheckpointStore, Positioned

__all__ = ["RunnerSettings", "StreamRunner", "default_consumer"]

log = logging.getLogger("raptor.runners")


_positioned = tuple.__new__  # Positioned(...) without its Python-level __new__ (hot loop)


def default_consumer() -> str:
    """A stable consumer identity: the host name (a StatefulSet pod keeps it on restart)."""
    return socket.gethostname() or "raptor-runner"


@dataclass(frozen=True, slots=True)
class RunnerSettings:
    """Knobs of a runner, built once at the edge (CLI, ``raptor up``)."""

    consumer: str = field(default_factory=default_consumer)
    max_batch: int | None = None  # None: the DataSource's ``batch_size`` (default 1000)
    fetch_timeout: float = 0.25
    retry_initial: float = 0.1
    retry_max: float = 5.0
    drain_timeout: float = 10.0
    dead_letter_dir: Path | None = None  # raptor up: dead-letters/<namespace>.<name>.ndjson
    secrets: Secrets = field(default_factory=Secrets)


class StreamRunner:
    """Consumes one streaming DataSource into the engine's state (see the module docstring)."""

    def __init__(
        self,
        engine: Engine,
        data_source: DataSourceDef,
        settings: RunnerSettings | None = None,
        *,
        source: Source | None = None,
        metrics: RunnerMetrics | None = None,
    ) -> None:
        self.engine = engine
        self.data_source = data_source
        self.settings = settings or RunnerSettings()
        self.config: StreamConfig = stream_config(data_source, self.settings.secrets)
        self.max_batch = self.settings.max_batch or self.config.batch_size
        self.source: Source = source or open_source(
            SourceSettings(data_source.fqn, self.config, self.settings.consumer, self.max_batch)
        )
        self.metrics = metrics or RunnerMetrics(data_source.fqn)
        default_file = None
        if self.settings.dead_letter_dir is not None:
            default_file = (
                self.settings.dead_letter_dir / f"{data_source.namespace}.{data_source.name}.ndjson"
            )
        self.dead_letters: DeadLetterSink = choose_sink(
            self.config.dead_letter, self.source, data_source.fqn, engine.clock, default_file
        )
        self.processor = EventProcessor(
            engine,
            data_source,
            broker_time_fallback=self.config.broker_time_fallback,
            payload_field=self.config.options.get("payload_field"),
        )
        store = engine.state
        self._checkpoints: CheckpointStore | None = (
            store if isinstance(store, CheckpointStore) else None
        )
        epoch = self.config.checkpoint_epoch
        self._suffix = f"#{epoch}" if epoch else ""
        self._started = False
        self._healthy = False
        self._stop: asyncio.Event | None = None

    @property
    def ready(self) -> bool:
        """Started and not currently failing to reach the broker or the state store."""
        return self._started and self._healthy

    # -- life cycle -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set, then drain and close the source."""
        self._stop = stop
        try:
            if not await self._start(stop):
                return
            await self._consume(stop)
        finally:
            self.metrics.up = 0
            self._healthy = False
            with contextlib.suppress(Exception):
                await self.source.close()

    async def _start(self, stop: asyncio.Event) -> bool:
        delay = self.settings.retry_initial
        while not stop.is_set():
            try:
                recorded = (
                    await self._checkpoints.positions(self.data_source.fqn)
                    if self._checkpoints is not None
                    else {}
                )
                await self.source.start(self._resume(recorded))
            except RaptorError as exc:
                self.metrics.error("fetch")
                log.warning(
                    "%s: cannot start %s: %s", self.data_source.fqn, self.source.description, exc
                )
                await self._sleep(stop, delay)
                delay = min(delay * 2, self.settings.retry_max)
                continue
            self._started = self._healthy = True
            self.metrics.up = 1
            log.info(
                "%s: consuming %s (dead letters: %s)",
                self.data_source.fqn,
                self.source.description,
                self.dead_letters.description,
            )
            return True
        return False

    def _resume(self, recorded: dict[str, str]) -> dict[str, str]:
        """Recorded positions of the current ``checkpoint_epoch``, by broker partition."""
        suffix = self._suffix
        if not suffix:
            return {p: pos for p, pos in recorded.items() if "#" not in p}
        return {p[: -len(suffix)]: pos for p, pos in recorded.items() if p.endswith(suffix)}

    @staticmethod
    async def _sleep(stop: asyncio.Event, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), seconds)

    async def _fetch(self, stop: asyncio.Event) -> list[Message]:
        delay = self.settings.retry_initial
        while True:
            try:
                return await self.source.fetch(self.max_batch, self.settings.fetch_timeout)
            except RaptorError as exc:
                self.metrics.error("fetch")
                self._healthy = False
                log.warning("%s: fetch failed: %s", self.data_source.fqn, exc)
                if stop.is_set():
                    return []
                await self._sleep(stop, delay)
                delay = min(delay * 2, self.settings.retry_max)

    async def _consume(self, stop: asyncio.Event) -> None:
        """Three stages overlap: fetching batch N+2, processing N+1 (CPU, here and in the
        program workers) and writing + acknowledging N (the state store's and broker's time).
        Writes and acks stay strictly in batch order: one commit in flight at a time."""
        prefetch = self.source.prefetch
        pending: asyncio.Task[list[Message]] | None = None
        committing: asyncio.Task[None] | None = None
        try:
            while not stop.is_set():
                if committing is not None and committing.done():
                    await committing  # surfaces an unexpected failure of the last commit
                    committing = None
                if pending is not None:
                    batch = await pending
                    pending = None
                else:
                    batch = await self._fetch(stop)
                if prefetch and not stop.is_set():
                    pending = asyncio.create_task(self._fetch(stop))
                if batch:
                    started = perf_counter()
                    outcomes = await self._prepare(batch)
                    if committing is not None:
                        await committing
                    committing = asyncio.create_task(self._commit(batch, outcomes, started))
                    if not prefetch:  # the source delivers the next batch only after the ack
                        await committing
                        committing = None
            # Drain: what was fetched is delivered to us already; write and ack it.
            if committing is not None:
                await committing
                committing = None
            if pending is not None:
                batch = await pending
                pending = None
                if batch:
                    await self.handle(batch)
        finally:
            for task in (pending, committing):
                if task is not None and not task.done():
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task

    # -- one batch ------------------------------------------------------------------------

    async def handle(self, batch: Sequence[Message]) -> None:
        """Process, write, dead-letter and acknowledge one batch (retrying failures)."""
        started = perf_counter()
        await self._commit(batch, await self._prepare(batch), started)

    async def _prepare(self, batch: Sequence[Message]) -> list[EventOutcome]:
        self.metrics.messages += len(batch)
        return await self.processor.process(batch)

    async def _commit(
        self, batch: Sequence[Message], outcomes: list[EventOutcome], started: float
    ) -> None:
        m = self.metrics
        replayed = await self._retry("state", lambda: self._write(outcomes))
        if replayed is None:
            return  # stopped while the state store was failing: nothing is acknowledged
        dead: list[DeadLetter] = []
        broker_time = updates = 0
        last_time: int | None = None
        for o in outcomes:  # one pass: batches are large
            if o.dead is not None:
                dead.append(o.dead)
            if o.broker_time_used:
                broker_time += 1
            if o.event_time is not None:
                last_time = o.event_time
            updates += len(o.mutations)
        if dead and await self._retry("dead_letter", lambda: self._dead(dead)) is None:
            return
        if await self._retry("ack", lambda: self._ack(batch)) is None:
            return
        m.broker_time += broker_time
        for d in dead:
            m.dead_letter(d.reason)
        m.replayed += replayed
        m.applied += len(outcomes) - len(dead) - replayed
        m.updates += updates
        m.batches += 1
        m.batch_seconds += perf_counter() - started
        now = self.engine.clock.now_micros()
        last = batch[-1]
        if last.broker_time is not None:
            m.lag_seconds = max(0.0, (now - last.broker_time) / 1e6)
        if last_time is not None:
            m.event_lag_seconds = (now - last_time) / 1e6
        m.lag_messages = self.source.lag()

    async def _dead(self, dead: list[DeadLetter]) -> int:
        await self.dead_letters.write(dead)
        return 1

    async def _ack(self, batch: Sequence[Message]) -> int:
        await self.source.ack(batch)
        return 1

    async def _retry(self, stage: str, attempt: Callable[[], Awaitable[int]]) -> int | None:
        """Run ``attempt`` until it succeeds; None when stopped past the drain deadline.
        State errors, broker errors (``SourceError``) and OS errors are retried."""
        delay = self.settings.retry_initial
        deadline: float | None = None
        loop = asyncio.get_running_loop()
        while True:
            try:
                result = await attempt()
                self._healthy = True
                return int(result)
            except (RaptorError, OSError) as exc:
                self.metrics.error(stage)
                self._healthy = False
                log.warning(
                    "%s: %s failed, retrying in %.1fs: %s", self.data_source.fqn, stage, delay, exc
                )
            stop = self._stop
            if stop is not None and stop.is_set():
                if deadline is None:
                    deadline = loop.time() + self.settings.drain_timeout
                if loop.time() >= deadline:
                    log.error(
                        "%s: giving up on %s at shutdown; unacknowledged messages will be "
                        "re-delivered",
                        self.data_source.fqn,
                        stage,
                    )
                    return None
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.retry_max)

    async def _write(self, outcomes: list[EventOutcome]) -> int:
        """Write the batch's mutations; returns how many events were replays."""
        try:
            return await self._write_events(outcomes, final=True)
        except ValueTypeError:
            pass
        # Isolate the event(s) whose values the store refuses; write the others.
        for o in outcomes:
            if o.dead is not None or not o.mutations:
                continue
            try:
                await self._write_events([o], final=False)
            except ValueTypeError as exc:
                o.dead = DeadLetter(o.message, Reason.WRONG_TYPE.value, str(exc))
                o.mutations = []
        return await self._write_events(outcomes, final=True)

    async def _write_events(self, outcomes: Sequence[EventOutcome], *, final: bool) -> int:
        now = self.engine.clock.now_micros()
        store = self._checkpoints
        positions: dict[str, str] = {}
        writes: list[Positioned] = []
        owners: list[int] = []
        plain: list[Mutation] = []
        suffix = self._suffix
        last_partition: str | None = None
        part = ""
        for i, o in enumerate(outcomes):
            msg = o.message
            pos = msg.position
            if pos is None or store is None:
                plain.extend(o.mutations)
                continue
            if msg.partition is not last_partition:  # batches hold runs of one partition
                last_partition = msg.partition
                part = last_partition + suffix
            if final:
                recorded = positions.get(part)
                if (
                    recorded is None
                    or len(pos) > len(recorded)
                    or (len(pos) == len(recorded) and pos > recorded)
                ):  # position_after, inlined
                    positions[part] = pos
            for mut in o.mutations:
                writes.append(_positioned(Positioned, (part, pos, mut)))
                owners.append(i)
        replayed = 0
        if plain:
            await self.engine.state.apply(plain, now)
        if store is not None and (writes or positions):
            fresh = await store.apply_checkpointed(writes, now, self.data_source.fqn, positions)
            if all(fresh):
                return 0
            applied_events = {owners[j] for j, ok in enumerate(fresh) if ok}
            replay_events = {owners[j] for j, ok in enumerate(fresh) if not ok}
            replayed = len(replay_events - applied_events)
        return replayed
