"""The ``k8s.raptor.ml/v1alpha1`` wire types: msgspec Structs that mirror the YAML. Pure.

``DataSource``, ``Feature`` and ``Model`` are spelled exactly as upstream Raptor spells them
(camelCase, ``storageURI``), so upstream manifests load unmodified. msgspec checks the types and
rejects unknown fields in one pass; the rules the types cannot say are in
:mod:`raptor.api.manifest_rules`, and :func:`raptor.api.manifests.resolve` ties the two together.
``metadata`` (Kubernetes ObjectMeta) and ``spec.builder`` are lenient on purpose: unknown fields
are ignored or kept (see :mod:`raptor.api.manifests`). The builder is typed by
:class:`BuilderSpec` in a second pass, so that its unknown keys survive as ``builder_extra``.
"""

from __future__ import annotations

from typing import Any, Final, TypeAlias

import msgspec

__all__ = [
    "API_GROUP",
    "API_VERSION",
    "BUILDER_KEYS",
    "KINDS",
    "MODEL_SERVERS",
    "BuilderSpec",
    "ConfigScalar",
    "ConfigVar",
    "DataSourceManifest",
    "DataSourceSpec",
    "Duration",
    "FeatureManifest",
    "FeatureSpec",
    "KeepPreviousSpec",
    "ModelManifest",
    "ModelSpec",
    "ObjectMeta",
    "ResourceRef",
    "SecretKeyRef",
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


BUILDER_KEYS: Final = frozenset(f.encode_name for f in msgspec.structs.fields(BuilderSpec))


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
