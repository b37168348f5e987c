"""The public surface of ``import raptor`` is locked here (SPEC 6), and stays lazy."""

from __future__ import annotations

import subprocess
import sys

import pytest

import raptor

EXPECTED = [
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


def test_all_is_exactly_the_sdk_surface() -> None:
    assert sorted(raptor.__all__) == EXPECTED


def test_every_public_name_resolves() -> None:
    for name in raptor.__all__:
        assert getattr(raptor, name) is not None, name


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        raptor.no_such_thing  # type: ignore[attr-defined]  # noqa: B018


def test_context_is_the_engines_context() -> None:
    from raptor.engine.context import Context

    assert raptor.Context is Context


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sorted(sys.modules)))"],
        check=True,
        capture_output=True,
        text=True,
    )
    return set(out.stdout.split())


def test_import_raptor_pulls_no_pandas_and_no_network_library() -> None:
    mods = _imported_after("import raptor")
    heavy = {"pandas", "numpy", "sklearn", "redis", "grpc", "starlette", "httpx", "yaml"}
    assert not (mods & heavy), mods & heavy
    assert not any(m.startswith("raptor.") for m in mods)


def test_star_import_gives_decorators_without_pandas() -> None:
    mods = _imported_after("from raptor import *\nassert callable(feature)")
    tops = {m.split(".")[0] for m in mods}
    assert not {"pandas", "redis", "grpc", "starlette", "httpx"} & tops
