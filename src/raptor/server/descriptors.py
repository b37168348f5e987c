"""Descriptors: what is deployed, as the REST accessor shows it. Pure.

One JSON object per Feature or Model, built from the engine's catalog and the control plane's
statuses (``Kind/fqn`` → :class:`~raptor.engine.catalog.AssetStatus`). Assets that failed to
deploy are listed too, with ``ready: false`` and the reason, from their status alone. Durations
are Go duration strings, as in manifests.

Feature::

    {"resource": "Feature", "fqn", "namespace", "name", "kind" (builder kind), "primitive",
     "aggr": ["sum", ...], "freshness", "staleness", "timeout", "keys": [...],
     "keepPrevious": {"versions", "over"} | null, "dataSource": fqn | null,
     "dependencies": [fqn...], "ready", "reason", "message"}

Model: the same common fields with ``"kind": "model"``, ``"features"``, ``"keyFeature"``,
``"modelServer"``, ``"modelFramework"`` (no ``primitive`` / ``aggr``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from raptor.api.timeutil import format_duration
from raptor.engine.catalog import AssetStatus, Catalog, FeatureRuntime, ModelRuntime

__all__ = ["describe", "describe_all", "describe_status"]


def _status_fields(status: AssetStatus | None) -> dict[str, Any]:
    if status is None:
        return {"ready": True, "reason": "Ready", "message": ""}
    return {"ready": status.ready, "reason": status.reason, "message": status.message}


def describe(
    rt: FeatureRuntime | ModelRuntime, statuses: Mapping[str, AssetStatus]
) -> dict[str, Any]:
    """The descriptor of a deployed feature or model."""
    if isinstance(rt, ModelRuntime):
        m = rt.defn
        status = statuses.get(f"Model/{m.fqn}")
        return {
            "resource": "Model",
            "fqn": m.fqn,
            "namespace": m.namespace,
            "name": m.name,
            "kind": "model",
            "freshness": format_duration(m.freshness),
            "staleness": format_duration(m.staleness),
            "timeout": format_duration(m.timeout),
            "keys": list(m.keys),
            "features": [str(s) for s in m.features],
            "keyFeature": str(m.key_feature),
            "modelServer": rt.server,
            "modelFramework": m.model_framework,
            "dependencies": sorted({s.fqn for s in m.features}),
            **_status_fields(status),
        }
    f = rt.defn
    status = statuses.get(f"Feature/{f.fqn}")
    keep = f.keep_previous
    return {
        "resource": "Feature",
        "fqn": f.fqn,
        "namespace": f.namespace,
        "name": f.name,
        "kind": rt.kind,
        "primitive": f.primitive.value,
        "aggr": [a.value for a in f.aggr],
        "freshness": format_duration(f.freshness),
        "staleness": format_duration(f.staleness),
        "timeout": format_duration(f.timeout),
        "keys": list(f.keys),
        "keepPrevious": (
            {"versions": keep.versions, "over": format_duration(keep.over)} if keep else None
        ),
        "dataSource": f.data_source,
        "dependencies": sorted({d.fqn for d in rt.dependencies}),
        **_status_fields(status),
    }


def describe_status(status: AssetStatus) -> dict[str, Any]:
    """The descriptor of an asset that is known only by its status (it failed to deploy)."""
    namespace, _, name = status.fqn.partition(".")
    return {
        "resource": status.kind,
        "fqn": status.fqn,
        "namespace": namespace,
        "name": name,
        "dependencies": list(status.dependencies),
        **_status_fields(status),
    }


def describe_all(catalog: Catalog, statuses: Mapping[str, AssetStatus]) -> list[dict[str, Any]]:
    """Every Feature and Model: deployed ones from the catalog, failed ones from their status;
    sorted by FQN."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    runtimes: list[FeatureRuntime | ModelRuntime] = [
        *catalog.features.values(),
        *catalog.models.values(),
    ]
    for rt in runtimes:
        d = describe(rt, statuses)
        out[(rt.fqn, d["resource"])] = d
    for status in statuses.values():
        key = (status.fqn, status.kind)
        if status.kind in ("Feature", "Model") and key not in out:
            out[key] = describe_status(status)
    return [out[k] for k in sorted(out)]
