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
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final, TypeAlias

import msgspec
import msgspec.inspect as mi

from raptor.api.assets import (
    Asset,
    ConfigValue,
    DataSourceDef,
    FeatureDef,
    KeepPrevious,
    ModelDef,
    Origin,
)
from raptor.api.names import FQN, Selector, fqn_of, normalize_name, parse_selector
from raptor.api.primitives import Primitive
from raptor.api.timeutil import format_duration, parse_duration
from raptor.api.windows import AggrFn, WindowSpec
from raptor.errors import ManifestError, SelectorError

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

API_GROUP: Final = "k8s.raptor.ml"
API_VERSION: Final = "k8s.raptor.ml/v1alpha1"
KINDS: Final = ("DataSource", "Feature", "Model")
MODEL_SERVERS: Final = frozenset({"builtin", "kserve", "mlserver", "triton"})
"""Model servers available here; others validate with a warning."""

Duration: TypeAlias = str | int
"""A Go duration string (``10s``, ``1h30m``); a YAML ``0`` is accepted."""
ConfigScalar: TypeAlias = str | int | float | bool | None


class _Wire(msgspec.Struct, frozen=True, forbid_unknown_fields=True, rename="camel", kw_only=True):
    """Strict wire type: unknown fields are rejected."""


class ObjectMeta(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """Kubernetes ObjectMeta: the usual fields typed, unknown ones ignored."""

    name: str
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    generate_name: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: Any = None
    deletion_timestamp: Any = None
    deletion_grace_period_seconds: int | None = None
    finalizers: tuple[str, ...] | None = None
    owner_references: tuple[dict[str, Any], ...] | None = None
    managed_fields: tuple[dict[str, Any], ...] | None = None


class ResourceRef(_Wire, frozen=True):
    name: str
    namespace: str | None = None


class KeepPreviousSpec(_Wire, frozen=True):
    versions: int
    over: Duration


class SecretKeyRef(_Wire, frozen=True):
    name: str
    key: str


class ConfigVar(_Wire, frozen=True):
    name: str
    value: ConfigScalar | msgspec.UnsetType = msgspec.UNSET
    secret_key_ref: SecretKeyRef | None = None


class BuilderSpec(msgspec.Struct, frozen=True, rename="camel", kw_only=True):
    """The known builder fields; the others are kept as ``builder_extra``."""

    code: str
    kind: str | None = None
    aggr: tuple[str, ...] | None = None
    aggr_granularity: Duration | None = None
    runtime: str | None = None
    packages: tuple[str, ...] | None = None


_BUILDER_KEYS: Final = frozenset(f.encode_name for f in msgspec.structs.fields(BuilderSpec))


class FeatureSpec(_Wire, frozen=True):
    primitive: str
    keys: tuple[str, ...]
    builder: dict[str, Any]
    freshness: Duration | None = None
    staleness: Duration | None = None
    timeout: Duration | None = None
    keep_previous: KeepPreviousSpec | None = None
    data_source: ResourceRef | None = None


class DataSourceSpec(_Wire, frozen=True):
    kind: str
    config: tuple[ConfigVar, ...] | None = None
    key_fields: tuple[str, ...] | None = None
    timestamp_field: str | None = None
    schema: Any = None
    replicas: int | None = None
    resources: dict[str, Any] | None = None


class ModelSpec(_Wire, frozen=True):
    features: tuple[str, ...]
    freshness: Duration | None = None
    staleness: Duration | None = None
    timeout: Duration | None = None
    key_feature: str | None = None
    labels: tuple[str, ...] | None = None
    keys: tuple[str, ...] | None = None
    model_framework: str | None = None
    model_framework_version: str | int | float | None = None
    storage_uri: str | None = msgspec.field(default=None, name="storageURI")
    model_image: str | None = None
    model_server: str | None = None
    inference_config: tuple[ConfigVar, ...] | None = None
    training_code: str | None = None


class FeatureManifest(_Wire, frozen=True):
    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: FeatureSpec
    status: Any = None


class DataSourceManifest(_Wire, frozen=True):
    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: DataSourceSpec
    status: Any = None


class ModelManifest(_Wire, frozen=True):
    api_version: str
    kind: str
    metadata: ObjectMeta
    spec: ModelSpec
    status: Any = None


_TYPES: Final[dict[str, type[msgspec.Struct]]] = {
    "Feature": FeatureManifest,
    "DataSource": DataSourceManifest,
    "Model": ModelManifest,
}
_NO_ORIGIN: Final = Origin()
_NAME = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$", re.IGNORECASE)


class _Where:
    """Builds located errors for one document."""

    __slots__ = ("origin", "resource")

    def __init__(self, origin: Origin, resource: str | None) -> None:
        self.origin = origin
        self.resource = resource

    @property
    def label(self) -> str:
        """``Model default/model-basic``, for warnings."""
        return (self.resource or "manifest").replace("/", " ", 1)

    def error(self, message: str, field: str | None = None) -> ManifestError:
        return ManifestError(
            message,
            file=self.origin.file,
            index=self.origin.index,
            resource=self.resource,
            field=field,
        )


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
        raise _Where(origin, None).error(
            f"a manifest must be a mapping with apiVersion, kind, metadata and spec, "
            f"got {type(doc).__name__}"
        )
    where = _Where(origin, _resource_of(doc))
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
        raise _translate(exc, tp, "", where) from None
    meta: ObjectMeta = manifest.metadata
    _check_name(meta.name, "metadata.name", where)
    namespace = meta.namespace or "default"
    _check_name(namespace, "metadata.namespace", where)
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
        return _feature(manifest.spec, namespace, common, where, out)
    if isinstance(manifest, DataSourceManifest):
        return _data_source(manifest.spec, common, where)
    return _model(manifest.spec, common, where, out)


def _feature(
    spec: FeatureSpec, ns: str, common: dict[str, Any], where: _Where, warnings: list[str]
) -> FeatureDef:
    try:
        primitive = Primitive.parse(spec.primitive)
    except ValueError as exc:
        raise where.error(str(exc), "spec.primitive") from None
    try:
        builder = msgspec.convert(spec.builder, BuilderSpec)
    except msgspec.ValidationError as exc:
        raise _translate(exc, BuilderSpec, "spec.builder", where) from None
    if not builder.code.strip():
        raise where.error("code is empty; expected a Python handler(row, ctx)", "spec.builder.code")
    _check_keys(spec.keys, "spec.keys", where)
    timeout = _duration(spec.timeout, "spec.timeout", where)
    freshness = _duration(spec.freshness, "spec.freshness", where, None)
    staleness = _duration(spec.staleness, "spec.staleness", where, None)
    aggr = _aggregations(builder.aggr or (), primitive, where)
    window: WindowSpec | None = None
    if aggr:
        if spec.keep_previous is not None:
            raise where.error(
                "keepPrevious cannot be combined with builder.aggr; windowed features have no "
                "previous versions",
                "spec.keepPrevious",
            )
        window = _window(builder.aggr_granularity, freshness, staleness, where, warnings)
        freshness, staleness = window.granularity, window.over
    else:
        if builder.aggr_granularity is not None:
            raise where.error(
                "aggrGranularity is set but builder.aggr is empty; add aggregation functions or "
                "remove it",
                "spec.builder.aggrGranularity",
            )
        if freshness is None:
            raise where.error("freshness is required (e.g. '1m')", "spec.freshness")
        staleness = _staleness(freshness, staleness, where)
    keep: KeepPrevious | None = None
    if spec.keep_previous is not None:
        kp = spec.keep_previous
        if kp.versions < 1:
            raise where.error(
                f"versions is {kp.versions}; expected 1 or more", "spec.keepPrevious.versions"
            )
        over = _duration(kp.over, "spec.keepPrevious.over", where)
        if over <= 0:
            raise where.error("over must be a positive duration", "spec.keepPrevious.over")
        keep = KeepPrevious(kp.versions, over)
    data_source: FQN | None = None
    if spec.data_source is not None:
        ref = spec.data_source
        _check_name(ref.name, "spec.dataSource.name", where)
        if ref.namespace:
            _check_name(ref.namespace, "spec.dataSource.namespace", where)
        data_source = fqn_of(ref.namespace or ns, ref.name)
    extra = {k: v for k, v in spec.builder.items() if k not in _BUILDER_KEYS}
    return FeatureDef(
        primitive=primitive,
        freshness=freshness,
        staleness=staleness,
        timeout=timeout,
        keys=spec.keys,
        code=builder.code,
        keep_previous=keep,
        data_source=data_source,
        builder_kind=builder.kind,
        aggr=aggr,
        window=window,
        runtime=builder.runtime,
        packages=builder.packages or (),
        builder_extra=extra,
        **common,
    )


def _window(
    aggr_granularity: Duration | None,
    freshness: int | None,
    staleness: int | None,
    where: _Where,
    warnings: list[str],
) -> WindowSpec:
    """The window of an aggregation: granularity = aggrGranularity or freshness, length =
    staleness (required, >= granularity)."""
    if aggr_granularity is not None:
        field = "spec.builder.aggrGranularity"
        granularity: int = _duration(aggr_granularity, field, where)
    elif freshness is not None:
        field, granularity = "spec.freshness", freshness
    else:
        raise where.error(
            "windowed features need builder.aggrGranularity or freshness (the bucket size)",
            "spec.freshness",
        )
    if granularity <= 0:
        raise where.error("the aggregation granularity must be positive", field)
    if staleness is None:
        raise where.error(
            "staleness is required for aggregations: it is the window length", "spec.staleness"
        )
    if staleness < granularity:
        raise where.error(
            f"staleness (window length) {format_duration(staleness)} is shorter than the "
            f"granularity {format_duration(granularity)}; expected staleness >= granularity",
            "spec.staleness",
        )
    if freshness is not None and freshness != granularity:
        warnings.append(
            f"{where.label}: freshness {format_duration(freshness)} is replaced by the "
            f"aggregation granularity {format_duration(granularity)}"
        )
    return WindowSpec(granularity, staleness)


def _aggregations(
    names: tuple[str, ...], primitive: Primitive, where: _Where
) -> tuple[AggrFn, ...]:
    out: list[AggrFn] = []
    for i, name in enumerate(names):
        field = f"spec.builder.aggr[{i}]"
        try:
            fn = AggrFn.parse(name)
        except ValueError as exc:
            raise where.error(str(exc), field) from None
        if primitive.is_list:
            raise where.error(
                f"aggregations need a scalar primitive; {primitive.value} is a list", field
            )
        if fn is not AggrFn.COUNT and not primitive.numeric:
            raise where.error(
                f"{fn.value} needs an int or float primitive, not {primitive.value} "
                "(count works for any scalar)",
                field,
            )
        if fn not in out:
            out.append(fn)
    return tuple(out)


def _data_source(spec: DataSourceSpec, common: dict[str, Any], where: _Where) -> DataSourceDef:
    if not spec.kind.strip():
        raise where.error("kind is empty; expected e.g. streaming, rest or push", "spec.kind")
    if spec.replicas is not None and spec.replicas < 0:
        raise where.error(f"replicas is {spec.replicas}; expected 0 or more", "spec.replicas")
    if spec.key_fields:
        _check_keys(spec.key_fields, "spec.keyFields", where)
    return DataSourceDef(
        kind=spec.kind,
        config=_config(spec.config or (), "spec.config", where),
        key_fields=spec.key_fields or (),
        timestamp_field=spec.timestamp_field,
        schema=spec.schema,
        replicas=spec.replicas,
        resources=spec.resources or {},
        **common,
    )


def _model(spec: ModelSpec, common: dict[str, Any], where: _Where, warnings: list[str]) -> ModelDef:
    ns: str = common["namespace"]
    if not spec.features:
        raise where.error("a Model needs at least one feature selector", "spec.features")
    features = tuple(
        _selector(s, ns, f"spec.features[{i}]", where) for i, s in enumerate(spec.features)
    )
    key_feature = (
        _selector(spec.key_feature, ns, "spec.keyFeature", where)
        if spec.key_feature
        else features[0]
    )
    labels = tuple(
        _selector(s, ns, f"spec.labels[{i}]", where) for i, s in enumerate(spec.labels or ())
    )
    if spec.keys:
        _check_keys(spec.keys, "spec.keys", where)
    freshness = _duration(spec.freshness, "spec.freshness", where, None)
    if freshness is None:
        raise where.error(
            "freshness is required (how long a prediction is fresh)", "spec.freshness"
        )
    staleness = _staleness(
        freshness, _duration(spec.staleness, "spec.staleness", where, None), where
    )
    server = spec.model_server
    if server is not None and server.lower() not in MODEL_SERVERS:
        warnings.append(
            f"{where.label}: modelServer {server!r} is not available here; the model will "
            f"not be served (available: {', '.join(sorted(MODEL_SERVERS))})"
        )
    version = spec.model_framework_version
    return ModelDef(
        freshness=freshness,
        staleness=staleness,
        timeout=_duration(spec.timeout, "spec.timeout", where),
        features=features,
        key_feature=key_feature,
        labels_features=labels,
        keys=spec.keys or (),
        model_framework=spec.model_framework,
        model_framework_version=None if version is None else str(version),
        storage_uri=spec.storage_uri,
        model_image=spec.model_image,
        model_server=server,
        inference_config=_config(spec.inference_config or (), "spec.inferenceConfig", where),
        training_code=spec.training_code,
        **common,
    )


def _selector(text: str, ns: str, field: str, where: _Where) -> Selector:
    try:
        return parse_selector(text, default_namespace=ns)
    except SelectorError as exc:
        raise where.error(str(exc), field) from None


def _config(items: tuple[ConfigVar, ...], field: str, where: _Where) -> tuple[ConfigValue, ...]:
    out: list[ConfigValue] = []
    seen: set[str] = set()
    for i, c in enumerate(items):
        at = f"{field}[{i}]"
        if not c.name:
            raise where.error("config entry has an empty name", f"{at}.name")
        if c.name in seen:
            raise where.error(f"config entry {c.name!r} is given more than once", f"{at}.name")
        seen.add(c.name)
        ref = c.secret_key_ref
        if (c.value is msgspec.UNSET) == (ref is None):
            raise where.error(
                f"config entry {c.name!r} needs exactly one of value or secretKeyRef{{name, key}}",
                at,
            )
        if ref is not None:
            out.append(ConfigValue(c.name, secret_name=ref.name, secret_key=ref.key))
        else:
            out.append(ConfigValue(c.name, value=c.value))
    return tuple(out)


def _check_name(name: str, field: str, where: _Where) -> None:
    if not _NAME.match(name):
        raise where.error(
            f"{name!r} is not a valid name; expected letters, digits and single '-' or '_' "
            "between them (e.g. hello-world)",
            field,
        )


def _check_keys(keys: tuple[str, ...], field: str, where: _Where) -> None:
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if not key:
            raise where.error("key names cannot be empty", f"{field}[{i}]")
        if key in seen:
            raise where.error(f"key {key!r} is listed twice", f"{field}[{i}]")
        seen.add(key)


def _duration(value: Duration | None, field: str, where: _Where, default: Any = 0) -> Any:
    """Microseconds of a Go duration, or ``default`` when absent."""
    if value is None:
        return default
    try:
        return parse_duration(value if isinstance(value, str) else str(value))
    except ValueError as exc:
        raise where.error(str(exc), field) from None
    except OverflowError:
        raise where.error(f"duration {value!r} is too large", field) from None


def _staleness(freshness: int, staleness: int | None, where: _Where) -> int:
    if staleness is None:
        return freshness
    if staleness < freshness:
        raise where.error(
            f"staleness {format_duration(staleness)} is shorter than freshness "
            f"{format_duration(freshness)}; expected staleness >= freshness",
            "spec.staleness",
        )
    return staleness


# --- msgspec errors -> located ManifestErrors -------------------------------------------------

_MSGSPEC = re.compile(
    r"^(?P<what>.*?)(?: - at `key` in `\$(?P<kpath>[^`]*)`| - at `\$(?P<path>[^`]*)`)?$", re.S
)
_WHAT_FIELD = re.compile(
    r"^Object (?P<kind>missing required|contains unknown) field `(?P<f>[^`]*)`$"
)
_WHAT_TYPE = re.compile(r"^Expected `(?P<exp>[^`]*)`(?:, got `(?P<got>[^`]*)`)?$")
_TYPE_WORDS: Final = {
    "object": "a mapping",
    "array": "a list",
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "null": "null",
}
_SEGMENT = re.compile(r"\.([^.\[]+)|\[[^\]]*\]")


def _words(types: str) -> str:
    return " or ".join(_TYPE_WORDS.get(t, t) for t in types.split(" | "))


def _translate(
    exc: msgspec.ValidationError, tp: type[msgspec.Struct], prefix: str, where: _Where
) -> ManifestError:
    m = _MSGSPEC.match(str(exc))
    assert m is not None  # the pattern matches any text
    what, path = m.group("what"), m.group("path") or m.group("kpath") or ""
    field = prefix + path if prefix else path.lstrip(".")
    if m.group("kpath") is not None:
        return where.error("mapping keys must be strings", field or None)
    fm = _WHAT_FIELD.match(what)
    if fm is not None:
        name = fm.group("f")
        sub = f"{field}.{name}" if field else name
        if fm.group("kind") == "missing required":
            return where.error(f"required field {name!r} is missing", sub)
        known = _known_fields(tp, path)
        hint = f"; expected one of: {', '.join(known)}" if known else ""
        return where.error(f"unknown field {name!r}{hint}", sub)
    tm = _WHAT_TYPE.match(what)
    if tm is not None:
        got = f", got {_words(tm.group('got'))}" if tm.group("got") else ""
        return where.error(f"expected {_words(tm.group('exp'))}{got}", field or None)
    return where.error(what[:1].lower() + what[1:], field or None)


def _known_fields(tp: type[msgspec.Struct], path: str) -> list[str] | None:
    """The field names accepted at ``path`` (``.spec.builder``) under ``tp``, for hints."""
    info: mi.Type = mi.type_info(tp)
    for seg in _SEGMENT.finditer(path):
        info = _unwrap(info)
        name = seg.group(1)
        if name is not None and isinstance(info, mi.StructType):
            nxt = [f.type for f in info.fields if f.encode_name == name]
            if not nxt:
                return None
            info = nxt[0]
        elif name is None and isinstance(info, mi.ListType | mi.VarTupleType):
            info = info.item_type
        elif name is None and isinstance(info, mi.DictType):
            info = info.value_type
        else:
            return None
    info = _unwrap(info)
    return [f.encode_name for f in info.fields] if isinstance(info, mi.StructType) else None


def _unwrap(info: mi.Type) -> mi.Type:
    if isinstance(info, mi.UnionType):
        for t in info.types:
            if not isinstance(t, mi.NoneType):
                return t
    return info


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
