"""Trained-model artifacts: saved in their framework's usual format, with a metadata file.

Layout of an artifact folder (what ``storageURI`` points at)::

    model.joblib | model.json | model.txt | model.onnx   the model (by framework)
    metadata.json                                        what it was trained on

* ``sklearn`` — :func:`joblib.dump` (scikit-learn's documented persistence) to ``model.joblib``.
* ``xgboost`` — ``save_model("model.json")`` (XGBoost's portable JSON format).
* ``lightgbm`` — the booster's ``save_model("model.txt")`` (LightGBM's text format).
* ``onnx`` — the serialized ``ModelProto`` (``model.onnx``).

``metadata.json`` records the framework and its version, the feature selectors **in the order
of the feature vector**, labels, keys, the number of training rows, the Raptor version, the
Python version, the artifact's file name and its SHA-256. :func:`load_artifact` reads one back
(and checks the digest). xgboost, lightgbm and onnx are imported only when used.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

__all__ = ["FRAMEWORKS", "Artifact", "framework_version", "load_artifact", "save_artifact"]

FRAMEWORKS: Mapping[str, str] = {
    "sklearn": "model.joblib",
    "xgboost": "model.json",
    "lightgbm": "model.txt",
    "onnx": "model.onnx",
}
"""Frameworks Raptor saves (and the builtin model server loads), with their file names."""

_ALIASES = {
    "scikit-learn": "sklearn",
    "scikit_learn": "sklearn",
    "xgb": "xgboost",
    "lgbm": "lightgbm",
}
_DISTRIBUTIONS = {
    "sklearn": "scikit-learn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "onnx": "onnx",
}


def normalize_framework(name: str) -> str:
    """``sklearn``/``xgboost``/``lightgbm``/``onnx`` for any accepted spelling; ValueError."""
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in FRAMEWORKS:
        raise ValueError(
            f"unknown model_framework {name!r}; expected one of {', '.join(FRAMEWORKS)}"
        )
    return key


def framework_version(framework: str) -> str | None:
    """The installed version of the framework's distribution, or None."""
    try:
        return importlib_metadata.version(_DISTRIBUTIONS[framework])
    except importlib_metadata.PackageNotFoundError:
        return None


@dataclass(frozen=True, slots=True)
class Artifact:
    """A saved model: its folder, file and metadata."""

    directory: Path
    file: Path
    metadata: Mapping[str, Any]

    @property
    def uri(self) -> str:
        return self.directory.resolve().as_uri()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_artifact(
    model: Any,
    framework: str,
    directory: Path,
    *,
    features: Sequence[str],
    labels: Sequence[str],
    keys: Sequence[str],
    name: str,
    training_rows: int | None = None,
) -> Artifact:
    """Save ``model`` under ``directory`` in its framework's format, with ``metadata.json``."""
    from raptor import __version__

    framework = normalize_framework(framework)
    directory.mkdir(parents=True, exist_ok=True)
    file = directory / FRAMEWORKS[framework]
    if framework == "sklearn":
        import joblib

        joblib.dump(model, file)
    elif framework == "xgboost":
        model.save_model(str(file))
    elif framework == "lightgbm":
        booster = getattr(model, "booster_", model)
        booster.save_model(str(file))
    else:
        data = model.SerializeToString() if hasattr(model, "SerializeToString") else model
        if not isinstance(data, bytes):
            raise TypeError("an onnx model must be a ModelProto or its serialized bytes")
        file.write_bytes(data)
    meta: dict[str, Any] = {
        "name": name,
        "framework": framework,
        "frameworkVersion": framework_version(framework),
        "file": file.name,
        "sha256": _sha256(file),
        "features": list(features),
        "labels": list(labels),
        "keys": list(keys),
        "trainingRows": training_rows,
        "modelClass": f"{type(model).__module__}.{type(model).__qualname__}",
        "savedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "raptorVersion": __version__,
        "pythonVersion": platform.python_version(),
    }
    (directory / "metadata.json").write_text(json.dumps(meta, indent=2) + "\n")
    return Artifact(directory, file, meta)


def load_artifact(directory: str | Path) -> tuple[Any, dict[str, Any]]:
    """``(model, metadata)`` of an artifact folder; ValueError if the digest does not match."""
    folder = Path(directory)
    meta: dict[str, Any] = json.loads((folder / "metadata.json").read_text())
    file = folder / meta["file"]
    if _sha256(file) != meta["sha256"]:
        raise ValueError(f"{file}: SHA-256 does not match metadata.json (corrupt or replaced)")
    framework = meta["framework"]
    if framework == "sklearn":
        import joblib

        return joblib.load(file), meta
    if framework == "xgboost":
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(str(file))
        return booster, meta
    if framework == "lightgbm":
        import lightgbm

        return lightgbm.Booster(model_file=str(file)), meta
    return file.read_bytes(), meta
