"""The ``k8s.raptor.ml/v1alpha1`` wire types and their validation into definitions. Pure.

The msgspec Structs below mirror the YAML of ``DataSource``, ``Feature`` and ``Model`` exactly as
upstream Raptor spells it (camelCase, ``storageURI``), so upstream manifests load unmodified.
msgspec does the type checking and rejects unknown fields, with the path of the culprit, in one
pass; :func:`resolve` then applies the rules the types cannot say and returns the frozen
definitions of :mod:`raptor.api.assets`. :func:`to_manifest` is its inverse:
``resolve(to_manifest(a)) == a`` up to ``origin``.

Leniency, on purpose:

* ``metadata`` is Kubernetes ObjectMeta: unknown fields are ignored (servers add fields);
  ``status`` is accepted and ignored.
* ``spec.builder`` keeps unknown keys (builder-specific config) in ``FeatureDef.builder_extra``.
* A duration is a Go duration string; a bare ``0`` (YAML int) is accepted too.
* ``modelFrameworkVersion`` may be a YAML number; it is kept as its string (quote ``"1.10"``).
* Config values (``{name, value}``) may be any scalar or null; they are kept as written.

Decisions where the spec leaves room:

* Non-windowed Features and Models: ``freshness`` is required; a missing ``staleness`` defaults
  to ``freshness`` (values are usable exactly as long as they are fresh); ``timeout`` defaults
  to 0 (no deadline). Zero durations are allowed.
* Windowed Features (``builder.aggr``): granularity is ``builder.aggrGranularity``, else
  ``freshness``; ``staleness`` (the window length) is required and >= granularity; freshness
  becomes the granularity (a differing explicit freshness is a warning). ``aggrGranularity``
  without ``aggr`` is an error (it would be silently meaningless).
* Names (``metadata.name``, namespaces, ``dataSource.name``) must be letters, digits and single
  ``-``/``_`` separators, so that every asset is addressable by a selector.
* ``keys`` may be empty but not contain empty or repeated names; config entries may not repeat.
* Unknown model servers are warnings (the model validates but is not served here).

Every error is a :class:`~raptor.errors.ManifestError` with file, document index, resource
(``Feature/default/hello-world``) and dotted field path (``spec.builder.aggr[1]``).

Modules, by concept: the wire types are in :mod:`raptor.api.manifest_types` (re-exported here),
the per-kind rules in :mod:`raptor.api.manifest_rules`, and the rewording of msgspec's errors in
:mod:`raptor.api.manifest_errors`; this module holds the two entry points.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import msgspec

from raptor.api.assets import (
    Asset,
    ConfigValue,
    DataSourceDef,
    FeatureDef,
    ModelDef,
    Origin,
)
from raptor.api.manifest_errors import Where, translate
from raptor.api.manifest_rules import (
    check_name,
    resolve_data_source,
    resolve_feature,
    resolve_model,
)
from raptor.api.manifest_types import (
    API_GROUP,
    API_VERSION,
    KINDS,
    MODEL_SERVERS,
    DataSourceManifest,
    FeatureManifest,
    ModelManifest,
    ObjectMeta,
)
from raptor.api.names import fqn_of, normalize_name
from raptor.api.timeutil import format_duration

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "KINDS",
    "MODEL_SERVERS",
    "DataSourceManifest",
    "FeatureManifest",
    "ModelManifest",
    "ObjectMeta",
    "resolve",
    "to_manifest",
]

_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "Feature": FeatureManifest,
    "DataSource": DataSourceManifest,
    "Model": ModelManifest,
}
_NO_ORIGIN: Final = Origin()


def _resource_of(doc: Mapping[str, Any]) -> str | None:
    kind, meta = doc.get("kind"), doc.get("metadata")
    if not isinstance(kind, str) or not isinstance(meta, Mapping):
        return None
    name, ns = meta.get("name"), meta.get("namespace")
    if not isinstance(name, str):
        return None
    return f"{kind}/{ns if isinstance(ns, str) and ns else 'default'}/{name}"


def resolve(
    doc: Mapping[str, Any], origin: Origin = _NO_ORIGIN, warnings: list[str] | None = None
) -> Asset:
    """Validate one manifest document and return its definition. Pure.

    Raises :class:`ManifestError` (located by ``origin``, the resource and the field path) for
    anything invalid; appends non-fatal findings (unknown model server...) to ``warnings``.
    """
    if not isinstance(doc, Mapping):
        raise Where(origin, None).error(
            f"a manifest must be a mapping with apiVersion, kind, metadata and spec, "
            f"got {type(doc).__name__}"
        )
    where = Where(origin, _resource_of(doc))
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if api_version != API_VERSION:
        got = "missing" if api_version is None else repr(api_version)
        raise where.error(f"apiVersion is {got}; expected {API_VERSION!r}", "apiVersion")
    if not isinstance(kind, str) or kind not in _TYPES:
        got = "missing" if kind is None else repr(kind)
        raise where.error(f"kind is {got}; expected one of {', '.join(KINDS)}", "kind")
    tp = _TYPES[kind]
    try:
        manifest: Any = msgspec.convert(doc if isinstance(doc, dict) else dict(doc), tp)
    except msgspec.ValidationError as exc:
        raise translate(exc, tp, "", where) from None
    meta: ObjectMeta = manifest.metadata
    check_name(meta.name, "metadata.name", where)
    namespace = meta.namespace or "default"
    check_name(namespace, "metadata.namespace", where)
    common: dict[str, Any] = {
        "fqn": fqn_of(namespace, meta.name),
        "namespace": normalize_name(namespace),
        "name": meta.name,
        "labels": meta.labels or {},
        "annotations": meta.annotations or {},
        "origin": origin,
    }
    out = warnings if warnings is not None else []
    if isinstance(manifest, FeatureManifest):
        return resolve_feature(manifest.spec, namespace, common, where, out)
    if isinstance(manifest, DataSourceManifest):
        return resolve_data_source(manifest.spec, common, where)
    return resolve_model(manifest.spec, common, where, out)


# --- definitions -> manifests -----------------------------------------------------------------


def to_manifest(asset: Asset) -> dict[str, Any]:
    """The canonical YAML-ready manifest of a definition. Pure.

    Durations are Go strings, names camelCase, empty optional fields omitted, namespaces in
    their Kubernetes spelling (``_`` written as ``-``). ``resolve(to_manifest(a)) == a`` up to
    ``origin``.
    """
    if isinstance(asset, FeatureDef):
        kind, spec = "Feature", _feature_spec(asset)
    elif isinstance(asset, DataSourceDef):
        kind, spec = "DataSource", _data_source_spec(asset)
    else:
        kind, spec = "Model", _model_spec(asset)
    meta: dict[str, Any] = {"name": asset.name, "namespace": _k8s(asset.namespace)}
    if asset.labels:
        meta["labels"] = dict(asset.labels)
    if asset.annotations:
        meta["annotations"] = dict(asset.annotations)
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


def _k8s(name: str) -> str:
    return name.replace("_", "-")


def _feature_spec(f: FeatureDef) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "primitive": f.primitive.value,
        "freshness": format_duration(f.freshness),
        "staleness": format_duration(f.staleness),
    }
    if f.timeout:
        spec["timeout"] = format_duration(f.timeout)
    if f.keep_previous is not None:
        spec["keepPrevious"] = {
            "versions": f.keep_previous.versions,
            "over": format_duration(f.keep_previous.over),
        }
    spec["keys"] = list(f.keys)
    if f.data_source is not None:
        ns, _, name = f.data_source.partition(".")
        ref = {"name": _k8s(name)}
        if ns != f.namespace:
            ref["namespace"] = _k8s(ns)
        spec["dataSource"] = ref
    builder: dict[str, Any] = dict(f.builder_extra)
    if f.builder_kind is not None:
        builder["kind"] = f.builder_kind
    if f.aggr:
        builder["aggr"] = [fn.value for fn in f.aggr]
        if f.window is not None:
            builder["aggrGranularity"] = format_duration(f.window.granularity)
    if f.runtime is not None:
        builder["runtime"] = f.runtime
    if f.packages:
        builder["packages"] = list(f.packages)
    builder["code"] = f.code
    spec["builder"] = builder
    return spec


def _config_items(items: tuple[ConfigValue, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for c in items:
        if c.secret_name is not None:
            ref = {"name": c.secret_name, "key": c.secret_key}
            out.append({"name": c.name, "secretKeyRef": ref})
        else:
            out.append({"name": c.name, "value": c.value})
    return out


def _data_source_spec(d: DataSourceDef) -> dict[str, Any]:
    spec: dict[str, Any] = {"kind": d.kind}
    if d.config:
        spec["config"] = _config_items(d.config)
    if d.key_fields:
        spec["keyFields"] = list(d.key_fields)
    if d.timestamp_field is not None:
        spec["timestampField"] = d.timestamp_field
    if d.schema is not None:
        spec["schema"] = d.schema
    if d.replicas is not None:
        spec["replicas"] = d.replicas
    if d.resources:
        spec["resources"] = dict(d.resources)
    return spec


def _model_spec(m: ModelDef) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "freshness": format_duration(m.freshness),
        "staleness": format_duration(m.staleness),
    }
    if m.timeout:
        spec["timeout"] = format_duration(m.timeout)
    spec["features"] = [str(s) for s in m.features]
    spec["keyFeature"] = str(m.key_feature)
    if m.labels_features:
        spec["labels"] = [str(s) for s in m.labels_features]
    if m.keys:
        spec["keys"] = list(m.keys)
    optional = {
        "modelFramework": m.model_framework,
        "modelFrameworkVersion": m.model_framework_version,
        "storageURI": m.storage_uri,
        "modelImage": m.model_image,
        "modelServer": m.model_server,
    }
    spec.update((k, v) for k, v in optional.items() if v is not None)
    if m.inference_config:
        spec["inferenceConfig"] = _config_items(m.inference_config)
    if m.training_code is not None:
        spec["trainingCode"] = m.training_code
    return spec
