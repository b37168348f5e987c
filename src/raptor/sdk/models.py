"""Models declared with ``@model``: the handle, and the :class:`TrainingContext` trainers get.

A trainer is ``def train(ctx: TrainingContext) -> model``. ``Model.train()`` calls it with a
context whose :meth:`TrainingContext.features_and_labels` builds the point-in-time-correct
training frame (:mod:`raptor.sdk.training`), keeps the returned model in memory and records the
framework version; ``Model.export(path)`` saves it as an artifact (:mod:`raptor.sdk.artifacts`)
and writes its manifest with ``storageURI`` pointing at it, next to the manifests of every
feature, label and data source it needs.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raptor.api.assets import ModelDef
from raptor.api.names import FQN
from raptor.api.timeutil import format_duration
from raptor.sdk.artifacts import Artifact, framework_version, save_artifact
from raptor.sdk.source import FunctionSource

if TYPE_CHECKING:
    import pandas as pd

    from raptor.sdk.registry import Registry

__all__ = ["Model", "TrainingContext"]

TimeBound = datetime | str | None


class TrainingContext:
    """What a trainer function receives: the model's inputs and its training frame."""

    def __init__(self, model: Model) -> None:
        self._model = model

    @property
    def fqn(self) -> str:
        return self._model.fqn

    @property
    def model_name(self) -> str:
        return self._model.name

    @property
    def namespace(self) -> str:
        return self._model.namespace

    @property
    def keys(self) -> list[str]:
        return list(self._model.keys)

    @property
    def input_features(self) -> list[str]:
        """The feature columns of :meth:`features_and_labels`, in feature-vector order."""
        return list(self._model.input_features)

    @property
    def input_labels(self) -> list[str]:
        """The label columns of :meth:`features_and_labels`."""
        return list(self._model.input_labels)

    @property
    def key_feature(self) -> str:
        return self._model.key_feature

    def features_and_labels(
        self, since: TimeBound = None, until: TimeBound = None, *, progress: bool | None = None
    ) -> pd.DataFrame:
        """The training frame (see :meth:`Model.features_and_labels`)."""
        return self._model.features_and_labels(since, until, progress=progress)

    def __repr__(self) -> str:
        return f"<TrainingContext {self.fqn} features={self.input_features}>"


class Model:
    """A model: ``.train()``, ``.features_and_labels()``, ``.export()``; calling it calls the
    trainer function."""

    __wrapped__: Callable[..., Any]

    def __init__(
        self,
        func: Callable[..., Any],
        definition: ModelDef,
        source: FunctionSource,
        input_features: Sequence[str],
        input_labels: Sequence[str],
        key_feature: str,
        registry: Registry,
    ) -> None:
        functools.update_wrapper(self, func)
        self.definition = definition
        self.source = source
        self.input_features = tuple(input_features)
        self.input_labels = tuple(input_labels)
        self.key_feature = key_feature
        self.registry = registry
        self.trained: Any = None
        self.training_rows: int | None = None
        self.artifact: Artifact | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    @property
    def fqn(self) -> FQN:
        return self.definition.fqn

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def namespace(self) -> str:
        return self.definition.namespace

    @property
    def keys(self) -> tuple[str, ...]:
        return self.definition.keys

    @property
    def framework(self) -> str:
        return self.definition.model_framework or "sklearn"

    def features_and_labels(
        self, since: TimeBound = None, until: TimeBound = None, *, progress: bool | None = None
    ) -> pd.DataFrame:
        """The point-in-time-correct training frame (SPEC 4.7, 8).

        One row per event of the key feature with ``since <= timestamp < until``; columns
        ``timestamp``, the model's keys, then one column per input feature and label, named by
        the selector as given. Each value is the feature's value at the row's time: windowed
        features their window at that instant, others their latest value not older than their
        staleness — never a value from the future. Missing values are null; no row is dropped.
        """
        from raptor.sdk.training import features_and_labels

        return features_and_labels(self, since, until, progress=progress)

    def train(self) -> Any:
        """Run the trainer on :meth:`features_and_labels` and keep the model it returns."""
        ctx = TrainingContext(self)
        trained = self.__wrapped__(ctx)
        if trained is None:
            raise ValueError(f"model {self.fqn}: the trainer returned None; return the model")
        self.trained = trained
        self.artifact = None
        version = framework_version(self.framework)
        self.definition = dataclasses.replace(self.definition, model_framework_version=version)
        return trained

    def save(self, directory: str | Path) -> Artifact:
        """Save the trained model (training it first if needed) under ``directory``."""
        if self.trained is None:
            self.train()
        self.artifact = save_artifact(
            self.trained,
            self.framework,
            Path(directory),
            features=[str(s) for s in self.definition.features],
            labels=[str(s) for s in self.definition.labels_features],
            keys=self.keys,
            name=str(self.fqn),
            training_rows=self.training_rows,
        )
        return self.artifact

    def manifest(self) -> str:
        """The Model manifest as YAML (``storageURI`` is set once it was saved or exported)."""
        from raptor.sdk.export import to_yaml

        return to_yaml([self.definition])

    def export(self, path: str | Path = "out", *, storage_uri: str | None = None) -> Path:
        """Train if needed, save the artifact under ``path/models/<name>/`` and write the
        manifests of the model, its features and labels (and what they read) and their data
        sources, plus ``kustomization.yaml`` and a ``Makefile``. ``storage_uri`` overrides the
        ``file://`` URI written into the manifest (e.g. the ``s3://`` copy a cluster reads)."""
        from raptor.sdk.export import export_model

        return export_model(self, Path(path), storage_uri=storage_uri)

    def __repr__(self) -> str:
        d = self.definition
        state = "trained" if self.trained is not None else "not trained"
        return (
            f"<Model {d.fqn}: {self.framework}, keys=({', '.join(d.keys)}), "
            f"features={list(self.input_features)}, labels={list(self.input_labels)}, "
            f"fresh {format_duration(d.freshness)}, {state}>"
        )
