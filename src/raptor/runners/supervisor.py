"""In-process runners for ``raptor up``: one :class:`StreamRunner` per streaming DataSource.

:class:`RunnerSupervisor` looks at the engine's catalog and runs a runner for every
``streaming`` DataSource that is ready **and has at least one ready feature** (consuming a
source nobody reads would acknowledge events that a feature added later never sees). On every
catalog change (:func:`run_runners` subscribes to the control plane's ``on_reconcile``) it
diffs what runs against what should run: a runner whose DataSource definition or bound features
changed is drained and restarted with the new catalog, a removed one is drained and stopped, a
new one is started. Each runner is a task owned by the supervisor (STYLE rule 15); a runner
that cannot be built (bad config, missing client library) is logged and retried on the next
change. Under ``raptor up`` dead letters default to ``dead-letters/<namespace>.<name>.ndjson``.

The control plane is taken as anything with an ``on_reconcile`` list of callbacks
(:class:`CatalogEvents`), so this package does not import :mod:`raptor.control`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from raptor.api.assets import DataSourceDef
from raptor.engine.catalog import Catalog
from raptor.engine.engine import Engine
from raptor.errors import RaptorError
from raptor.runners.loop import RunnerSettings, StreamRunner
from raptor.runners.metrics import RunnerMetrics, render

__all__ = ["CatalogEvents", "RunnerSupervisor", "run_runners", "streaming_sources"]

log = logging.getLogger("raptor.runners")


class CatalogEvents(Protocol):
    """What :func:`run_runners` needs from a control plane."""

    @property
    def on_reconcile(self) -> list[Callable[[Any], None]]: ...


def streaming_sources(catalog: Catalog) -> dict[str, tuple[DataSourceDef, tuple[Any, ...]]]:
    """Ready streaming DataSources with ready features → (definition, feature definitions).
    Pure: the "desired runners" of a catalog."""
    out: dict[str, tuple[DataSourceDef, tuple[Any, ...]]] = {}
    for fqn, src in catalog.data_sources.items():
        if src.kind.lower() != "streaming":
            continue
        status = catalog.statuses.get(f"DataSource/{fqn}")
        if status is not None and not status.ready:
            continue
        features = tuple(
            f.defn for f in sorted(catalog.features_of(fqn), key=lambda f: f.fqn) if f.program
        )
        if features:
            out[fqn] = (src, features)
    return out


@dataclass
class _Running:
    identity: tuple[DataSourceDef, tuple[Any, ...]]
    runner: StreamRunner
    stop: asyncio.Event
    task: asyncio.Task[None]


class RunnerSupervisor:
    """Starts, restarts and stops the runners of a catalog (see the module docstring)."""

    def __init__(self, engine: Engine, settings: RunnerSettings | None = None) -> None:
        self.engine = engine
        self.settings = settings or RunnerSettings(dead_letter_dir=Path("dead-letters"))
        self.running: dict[str, _Running] = {}
        self.problems: dict[str, str] = {}
        self._metrics: dict[str, RunnerMetrics] = {}

    async def sync(self) -> None:
        """Make the running runners match the engine's current catalog."""
        desired = streaming_sources(self.engine.catalog)
        for fqn in list(self.running):
            want = desired.get(fqn)
            if want is None or want != self.running[fqn].identity:
                await self._stop(fqn)
        for fqn, identity in desired.items():
            if fqn not in self.running:
                self._start(fqn, identity)
        for fqn in list(self.problems):
            if fqn not in desired:
                del self.problems[fqn]

    def _start(self, fqn: str, identity: tuple[DataSourceDef, tuple[Any, ...]]) -> None:
        metrics = self._metrics.setdefault(fqn, RunnerMetrics(fqn))
        try:
            runner = StreamRunner(self.engine, identity[0], self.settings, metrics=metrics)
        except (RaptorError, ImportError) as exc:
            self.problems[fqn] = str(exc)
            log.error("DataSource %s: cannot start its runner: %s", fqn, exc)
            return
        self.problems.pop(fqn, None)
        stop = asyncio.Event()
        task = asyncio.create_task(self._guard(fqn, runner, stop), name=f"raptor-runner-{fqn}")
        self.running[fqn] = _Running(identity, runner, stop, task)

    async def _guard(self, fqn: str, runner: StreamRunner, stop: asyncio.Event) -> None:
        try:
            await runner.run(stop)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a runner must not take raptor up down
            self.problems[fqn] = f"runner crashed: {exc!r}"
            log.exception("DataSource %s: runner crashed", fqn)

    async def _stop(self, fqn: str) -> None:
        r = self.running.pop(fqn)
        r.stop.set()
        timeout = self.settings.drain_timeout + self.settings.fetch_timeout + 5
        try:
            await asyncio.wait_for(asyncio.shield(r.task), timeout)
        except TimeoutError:
            r.task.cancel()
            with contextlib.suppress(BaseException):
                await r.task

    async def aclose(self) -> None:
        """Drain and stop every runner (concurrently)."""
        await asyncio.gather(*(self._stop(fqn) for fqn in list(self.running)))

    def ready(self) -> Mapping[str, bool]:
        return {fqn: r.runner.ready for fqn, r in self.running.items()}

    def metrics(self) -> list[RunnerMetrics]:
        return list(self._metrics.values())

    def metrics_text(self) -> bytes:
        """The runners' Prometheus families (no process families: the server has them)."""
        return render(self.metrics(), process=False)


async def run_runners(
    engine: Engine,
    control_plane: CatalogEvents,
    stop: asyncio.Event,
    settings: RunnerSettings | None = None,
    *,
    supervisor: RunnerSupervisor | None = None,
) -> None:
    """Run the runners of ``engine``'s catalog until ``stop``; follow catalog changes.

    ``settings`` default: dead letters in ``./dead-letters/`` (``raptor up``)."""
    if settings is not None and settings.dead_letter_dir is None:
        settings = replace(settings, dead_letter_dir=Path("dead-letters"))
    sup = supervisor or RunnerSupervisor(engine, settings)
    changed = asyncio.Event()

    def on_reconcile(_report: object) -> None:
        changed.set()

    control_plane.on_reconcile.append(on_reconcile)
    try:
        await sup.sync()
        while not stop.is_set():
            waiter = asyncio.ensure_future(changed.wait())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()
                stopper.cancel()
            if changed.is_set():
                changed.clear()
                await sup.sync()
    finally:
        with contextlib.suppress(ValueError):
            control_plane.on_reconcile.remove(on_reconcile)
        await sup.aclose()
