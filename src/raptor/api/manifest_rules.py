"""The rules the wire types cannot say: one type-checked spec into its frozen definition. Pure.

:func:`raptor.api.manifests.resolve` checks ``apiVersion``, ``kind`` and the types, then hands
the spec to :func:`resolve_feature`, :func:`resolve_data_source` or :func:`resolve_model`. They
parse durations, primitives, aggregation functions and selectors, apply the defaults and the
decisions listed in :mod:`raptor.api.manifests` (staleness defaults to freshness; a windowed
Feature's window is ``aggrGranularity`` or freshness by ``staleness``...), and raise
located :class:`~raptor.errors.ManifestError` through the document's :class:`Where`. Non-fatal
findings (an unknown model server, a replaced freshness) are appended to ``warnings``.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

from raptor.api.assets import (
    ConfigValue,
    DataSourceDef,
    FeatureDef,
    KeepPrevious,
    ModelDef,
)
from raptor.api.manifest_errors import Where, translate
from raptor.api.manifest_types import (
    BUILDER_KEYS,
    MODEL_SERVERS,
    BuilderSpec,
    ConfigVar,
    DataSourceSpec,
    Duration,
    FeatureSpec,
    ModelSpec,
)
from raptor.api.names import FQN, Selector, fqn_of, parse_selector
from raptor.api.primitives import Primitive
from raptor.api.timeutil import format_duration, parse_duration
from raptor.api.windows import AggrFn, WindowSpec
from raptor.errors import SelectorError

__all__ = ["check_name", "resolve_data_source", "resolve_feature", "resolve_model"]

_NAME = re.compile(r"^[a-z0-9]+(?:[-_][a-z0-9]+)*$", re.IGNORECASE)


def resolve_feature(
    spec: FeatureSpec, ns: str, common: dict[str, Any], where: Where, warnings: list[str]
) -> FeatureDef:
    try:
        primitive = Primitive.parse(spec.primitive)
    except ValueError as exc:
        raise where.error(str(exc), "spec.primitive") from None
    try:
        builder = msgspec.convert(spec.builder, BuilderSpec)
    except msgspec.ValidationError as exc:
        raise translate(exc, BuilderSpec, "spec.builder", where) from None
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
        check_name(ref.name, "spec.dataSource.name", where)
        if ref.namespace:
            check_name(ref.namespace, "spec.dataSource.namespace", where)
        data_source = fqn_of(ref.namespace or ns, ref.name)
    extra = {k: v for k, v in spec.builder.items() if k not in BUILDER_KEYS}
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
    where: Where,
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


def _aggregations(names: tuple[str, ...], primitive: Primitive, where: Where) -> tuple[AggrFn, ...]:
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


def resolve_data_source(
    spec: DataSourceSpec, common: dict[str, Any], where: Where
) -> DataSourceDef:
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


def resolve_model(
    spec: ModelSpec, common: dict[str, Any], where: Where, warnings: list[str]
) -> ModelDef:
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


def _selector(text: str, ns: str, field: str, where: Where) -> Selector:
    try:
        return parse_selector(text, default_namespace=ns)
    except SelectorError as exc:
        raise where.error(str(exc), field) from None


def _config(items: tuple[ConfigVar, ...], field: str, where: Where) -> tuple[ConfigValue, ...]:
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


def check_name(name: str, field: str, where: Where) -> None:
    if not _NAME.match(name):
        raise where.error(
            f"{name!r} is not a valid name; expected letters, digits and single '-' or '_' "
            "between them (e.g. hello-world)",
            field,
        )


def _check_keys(keys: tuple[str, ...], field: str, where: Where) -> None:
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if not key:
            raise where.error("key names cannot be empty", f"{field}[{i}]")
        if key in seen:
            raise where.error(f"key {key!r} is listed twice", f"{field}[{i}]")
        seen.add(key)


def _duration(value: Duration | None, field: str, where: Where, default: Any = 0) -> Any:
    """Microseconds of a Go duration, or ``default`` when absent."""
    if value is None:
        return default
    try:
        return parse_duration(value if isinstance(value, str) else str(value))
    except ValueError as exc:
        raise where.error(str(exc), field) from None
    except OverflowError:
        raise where.error(f"duration {value!r} is too large", field) from None


def _staleness(freshness: int, staleness: int | None, where: Where) -> int:
    if staleness is None:
        return freshness
    if staleness < freshness:
        raise where.error(
            f"staleness {format_duration(staleness)} is shorter than freshness "
            f"{format_duration(freshness)}; expected staleness >= freshness",
            "spec.staleness",
        )
    return staleness
