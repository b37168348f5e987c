"""The reconcile planner: desired assets vs running assets → actions. Pure.

``raptor up`` calls it on every change of its manifest folders; the Kubernetes operator will
call the same function with what the API server holds. It decides, it does nothing:

* assets only desired → ``create``; only running → ``delete``;
* in both but different → ``update``; identical → ``unchanged``;
* a desired asset that is *invalid* while an older valid version runs → ``keep`` (the old
  version goes on serving and the error is reported: a bad edit never takes down a running
  asset).

Assets are keyed by ``(kind, fqn)``. Equality ignores ``origin`` (moving a manifest to another
file is not a change).

>>> from raptor.api.assets import DataSourceDef
>>> a = DataSourceDef(fqn="default.s", namespace="default", name="s", kind="push")
>>> plan({("DataSource", "default.s"): a}, {}).create
(('DataSource', 'default.s'),)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from raptor.api.assets import Asset, DataSourceDef, Origin

__all__ = ["AssetKey", "Plan", "asset_key", "plan", "same_asset"]

AssetKey = tuple[str, str]


def asset_key(a: Asset) -> AssetKey:
    """``(kind, fqn)`` of an asset."""
    return ("DataSource" if isinstance(a, DataSourceDef) else a.kind, a.fqn)


def same_asset(a: Asset, b: Asset) -> bool:
    """True when two definitions are equal apart from where they were read from."""
    if type(a) is not type(b):
        return False
    return dataclasses.replace(a, origin=Origin()) == dataclasses.replace(b, origin=Origin())


@dataclass(frozen=True, slots=True)
class Plan:
    create: tuple[AssetKey, ...] = ()
    update: tuple[AssetKey, ...] = ()
    delete: tuple[AssetKey, ...] = ()
    keep: tuple[AssetKey, ...] = ()
    unchanged: tuple[AssetKey, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.create or self.update or self.delete or self.keep)


def plan(
    desired: Mapping[AssetKey, Asset],
    running: Mapping[AssetKey, Asset],
    invalid: frozenset[AssetKey] = frozenset(),
) -> Plan:
    """Decide what to do. ``invalid`` lists desired keys whose new definition was rejected."""
    create, update, delete, keep, unchanged = [], [], [], [], []
    for key in sorted(desired.keys() | invalid):
        if key in invalid:
            if key in running:
                keep.append(key)
            continue
        if key not in running:
            create.append(key)
        elif same_asset(desired[key], running[key]):
            unchanged.append(key)
        else:
            update.append(key)
    for key in sorted(running.keys() - desired.keys() - invalid):
        delete.append(key)
    return Plan(tuple(create), tuple(update), tuple(delete), tuple(keep), tuple(unchanged))
