"""The local control plane of ``raptor up``: manifests in folders → a running catalog.

:meth:`LocalControlPlane.reconcile` loads every manifest under the given paths, checks them all
together (:func:`raptor.engine.catalog.build_catalog`), asks the pure planner what changed and
hands the new catalog to the engine. :meth:`LocalControlPlane.watch` re-runs it whenever a
``.yaml``/``.yml`` file under the paths is added, modified or deleted — no restart needed.

A bad manifest never takes down what already runs: if a file no longer parses, the assets it
held keep running in their last good version; if an asset's new definition is rejected (bad
program, cycle, name clash...), its previous version keeps serving. Either way the precise
error is reported in the log and in the asset's status (reason ``UpdateRejected``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from raptor.api.assets import Asset
from raptor.api.loading import load_paths
from raptor.control.planner import AssetKey, Plan, asset_key, plan
from raptor.engine.catalog import AssetStatus, Catalog, build_catalog
from raptor.engine.engine import Engine

__all__ = ["LocalControlPlane", "ReconcileReport"]

log = logging.getLogger("raptor.control")


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    plan: Plan
    errors: tuple[str, ...]
    warnings: tuple[str, ...]
    notices: tuple[str, ...]
    catalog: Catalog


def _status_key(key: AssetKey) -> str:
    return f"{key[0]}/{key[1]}"


class LocalControlPlane:
    """Owns the desired state read from files and keeps the engine's catalog in sync."""

    def __init__(self, engine: Engine, paths: Sequence[str | Path]) -> None:
        self.engine = engine
        self.paths = [Path(p) for p in paths]
        self.running: dict[AssetKey, Asset] = {}
        self._statuses: dict[str, AssetStatus] = {}
        self.last: ReconcileReport | None = None
        self.on_reconcile: list[Callable[[ReconcileReport], None]] = []

    def statuses(self) -> Mapping[str, AssetStatus]:
        """Status of every asset, keyed ``Kind/fqn`` (for the descriptors API)."""
        return self._statuses

    def reconcile(self) -> ReconcileReport:
        """Load, check, plan and apply. Never raises for bad manifests."""
        loaded = load_paths(self.paths)
        desired: dict[AssetKey, Asset] = {asset_key(a): a for a in loaded.assets}
        errors = [str(e) for e in loaded.errors]
        kept: dict[AssetKey, str] = {}

        # Files that failed to load keep their previously running assets.
        bad_files = {e.file for e in loaded.errors if e.file is not None}
        for key, previous in self.running.items():
            if key not in desired and previous.origin.file in bad_files:
                desired[key] = previous
                kept[key] = next(str(e) for e in loaded.errors if e.file == previous.origin.file)

        catalog = build_catalog(desired.values())
        # Assets whose new definition is rejected keep their previous running version.
        for _ in range(3):
            rollback = False
            for status in catalog.errors:
                key = (status.kind, status.fqn)
                old = self.running.get(key)
                prev = self._statuses.get(_status_key(key))
                if old is not None and prev is not None and prev.ready and desired[key] != old:
                    desired[key] = old
                    kept[key] = status.message
                    rollback = True
            if not rollback:
                break
            catalog = build_catalog(desired.values())

        for status in catalog.errors:
            if (status.kind, status.fqn) not in kept:
                errors.append(status.message)
        the_plan = plan(desired, self.running, frozenset(kept))
        statuses = dict(catalog.statuses)
        for key, message in kept.items():
            current = statuses.get(_status_key(key))
            if current is not None and current.ready:
                statuses[_status_key(key)] = dataclasses.replace(
                    current, reason="UpdateRejected", message=message
                )
            errors.append(f"{message} (the previous version of {key[0]} {key[1]} keeps running)")

        self.engine.load(catalog)
        self.running = {k: v for k, v in desired.items()}
        self._statuses = statuses
        report = ReconcileReport(
            the_plan,
            tuple(errors),
            tuple(loaded.warnings) + catalog.warnings,
            tuple(loaded.notices),
            catalog,
        )
        self.last = report
        for callback in self.on_reconcile:
            callback(report)
        return report

    async def watch(self, stop: asyncio.Event, *, debounce_ms: int = 150) -> None:
        """Reconcile on every change of a manifest under the paths until ``stop`` is set."""
        from watchfiles import Change, awatch  # the only user of watchfiles

        def manifest_filter(change: Change, path: str) -> bool:
            return path.endswith((".yaml", ".yml"))

        targets = [p for p in self.paths if p.exists()]
        if not targets:
            await stop.wait()
            return
        async for changes in awatch(
            *targets,
            watch_filter=manifest_filter,
            stop_event=stop,
            debounce=debounce_ms,
            step=50,
            recursive=True,
        ):
            log.info("manifests changed: %s", ", ".join(sorted({p for _, p in changes})))
            try:
                self.reconcile()
            except Exception:  # never let the watcher die; the next change retries
                log.exception("reconcile failed")
