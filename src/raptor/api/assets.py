"""Resolved asset definitions: what the engine, control plane and SDK work with. Pure.

The wire types in :mod:`raptor.api.manifests` mirror the YAML (Go durations as strings, camelCase
names, optional fields). :func:`raptor.api.manifests.resolve` validates one manifest and turns it
into one of these frozen definitions: durations in microseconds, primitives and aggregation
functions as enums, the window worked out, defaults applied. Cross-asset checks (a Feature and a
Model sharing a name, dependency cycles, the builder kind taken from the DataSource) happen where
all assets are known: :mod:`raptor.engine.catalog`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from raptor.api.names import FQN, Selector
from raptor.api.primitives import Primitive
from raptor.api.windows import AggrFn, WindowSpec

__all__ = [
    "Asset",
    "ConfigValue",
    "DataSourceDef",
    "FeatureDef",
    "KeepPrevious",
    "ModelDef",
    "Origin",
]


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a definition came from, for error messages: file and 0-based document index."""

    file: str | None = None
    index: int | None = None


@dataclass(frozen=True, slots=True)
class KeepPrevious:
    versions: int
    over: int  # microseconds


@dataclass(frozen=True, slots=True)
class ConfigValue:
    """One DataSource/Model config entry: a literal ``value`` or a ``secretKeyRef``."""

    name: str
    value: Any = None
    secret_name: str | None = None
    secret_key: str | None = None


@dataclass(frozen=True)
class FeatureDef:
    fqn: FQN
    namespace: str  # normalized (lower case, ``_``)
    name: str  # the Kubernetes name, as written
    primitive: Primitive
    freshness: int  # microseconds; for aggregations, the granularity
    staleness: int  # microseconds; for aggregations, the window length
    timeout: int  # microseconds; 0 = no deadline
    keys: tuple[str, ...]
    code: str
    keep_previous: KeepPrevious | None = None
    data_source: FQN | None = None
    builder_kind: str | None = None  # as written; the catalog resolves the default
    aggr: tuple[AggrFn, ...] = ()
    window: WindowSpec | None = None
    runtime: str | None = None
    packages: tuple[str, ...] = ()
    builder_extra: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    origin: Origin = Origin()

    @property
    def kind(self) -> str:
        return "Feature"

    @property
    def windowed(self) -> bool:
        return bool(self.aggr)


@dataclass(frozen=True)
class DataSourceDef:
    fqn: FQN
    namespace: str
    name: str
    kind: str
    config: tuple[ConfigValue, ...] = ()
    key_fields: tuple[str, ...] = ()
    timestamp_field: str | None = None
    schema: Any = None
    replicas: int | None = None
    resources: Mapping[str, Any] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    origin: Origin = Origin()

    @property
    def kind_name(self) -> str:
        return "DataSource"

    def config_value(self, name: str, default: Any = None) -> Any:
        """The literal value of config entry ``name`` (secret refs are resolved elsewhere)."""
        for c in self.config:
            if c.name == name:
                return c.value
        return default


@dataclass(frozen=True)
class ModelDef:
    fqn: FQN
    namespace: str
    name: str
    freshness: int
    staleness: int
    timeout: int
    features: tuple[Selector, ...]
    key_feature: Selector
    labels_features: tuple[Selector, ...] = ()  # spec.labels: the training labels' selectors
    keys: tuple[str, ...] = ()
    model_framework: str | None = None
    model_framework_version: str | None = None
    storage_uri: str | None = None
    model_image: str | None = None
    model_server: str | None = None
    inference_config: tuple[ConfigValue, ...] = ()
    training_code: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    origin: Origin = Origin()

    @property
    def kind(self) -> str:
        return "Model"


Asset = FeatureDef | DataSourceDef | ModelDef
