"""Raptor: from notebook to production.

The SDK names are exported here (SPEC 6) and locked by ``tests/unit/test_public_api.py``. They
are **lazy**: ``import raptor`` imports nothing but this module (no pandas, no network library);
a name's module is imported the first time the name is used (PEP 562 module ``__getattr__``).
``from raptor import *`` imports the decorators and types, still without pandas, which only
replay, training and export need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

__all__ = [
    "AggregationFunction",
    "Context",
    "Primitive",
    "PushConfig",
    "RestConfig",
    "StreamingConfig",
    "TrainingContext",
    "__version__",
    "aggregation",
    "data_source",
    "feature",
    "freshness",
    "keep_previous",
    "labels",
    "manifests",
    "model",
    "namespace",
    "runtime",
]

_LAZY: dict[str, str] = {
    "AggregationFunction": "raptor.sdk.types",
    "Context": "raptor.engine.context",
    "Primitive": "raptor.api.primitives",
    "PushConfig": "raptor.sdk.types",
    "RestConfig": "raptor.sdk.types",
    "StreamingConfig": "raptor.sdk.types",
    "TrainingContext": "raptor.sdk.models",
    "aggregation": "raptor.sdk.decorators",
    "data_source": "raptor.sdk.decorators",
    "feature": "raptor.sdk.decorators",
    "freshness": "raptor.sdk.decorators",
    "keep_previous": "raptor.sdk.decorators",
    "labels": "raptor.sdk.decorators",
    "manifests": "raptor.sdk.export",
    "model": "raptor.sdk.decorators",
    "namespace": "raptor.sdk.decorators",
    "runtime": "raptor.sdk.decorators",
}

if TYPE_CHECKING:
    from raptor.api.primitives import Primitive as Primitive
    from raptor.engine.context import Context as Context
    from raptor.sdk.decorators import aggregation as aggregation
    from raptor.sdk.decorators import data_source as data_source
    from raptor.sdk.decorators import feature as feature
    from raptor.sdk.decorators import freshness as freshness
    from raptor.sdk.decorators import keep_previous as keep_previous
    from raptor.sdk.decorators import labels as labels
    from raptor.sdk.decorators import model as model
    from raptor.sdk.decorators import namespace as namespace
    from raptor.sdk.decorators import runtime as runtime
    from raptor.sdk.export import manifests as manifests
    from raptor.sdk.models import TrainingContext as TrainingContext
    from raptor.sdk.types import AggregationFunction as AggregationFunction
    from raptor.sdk.types import PushConfig as PushConfig
    from raptor.sdk.types import RestConfig as RestConfig
    from raptor.sdk.types import StreamingConfig as StreamingConfig


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'raptor' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
