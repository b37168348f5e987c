"""``raptor validate PATH...``: the admission checks, for CI.

Output is one line per finding (``error:``, ``warning:``, ``notice:``) naming file, document,
resource and field, then a summary. Exit 0 when there is no error, 1 otherwise, 2 when a path
does not exist.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from raptor.api.assets import Asset, DataSourceDef, FeatureDef, ModelDef
from raptor.api.loading import load_paths
from raptor.engine.catalog import build_catalog
from raptor.engine.programs import check_packages

__all__ = ["run_validate", "validate_paths"]


def validate_paths(
    paths: Sequence[str | Path],
) -> tuple[list[str], list[str], list[str], tuple[Asset, ...]]:
    """``(errors, warnings, notices, assets)`` for the manifests under ``paths``."""
    loaded = load_paths(paths)
    errors = [str(e) for e in loaded.errors]
    warnings = list(loaded.warnings)
    notices = list(loaded.notices)
    catalog = build_catalog(loaded.assets)
    # An unavailable model server is a warning (SPEC 8): the manifest itself is valid.
    for s in catalog.errors:
        if s.reason == "ModelServerUnavailable" or not s.message:
            continue
        text = s.message if not s.origin or s.origin in s.message else f"{s.origin}: {s.message}"
        if text not in errors:
            errors.append(text)
    warnings.extend(w for w in catalog.warnings if w not in warnings)
    for a in loaded.assets:
        if isinstance(a, FeatureDef) and a.packages:
            missing = check_packages(a.packages)
            if missing:
                errors.append(
                    f"Feature/{a.namespace}/{a.name}: runtime package(s) not installed here: "
                    + ", ".join(missing)
                )
    return errors, warnings, notices, loaded.assets


def run_validate(paths: Sequence[str], *, quiet: bool = False) -> int:
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        for p in missing:
            print(f"error: {p}: no such file or directory", file=sys.stderr)
        return 2
    errors, warnings, notices, assets = validate_paths(paths)
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if not quiet:
        for w in warnings:
            print(f"warning: {w}", file=sys.stderr)
        for n in notices:
            print(f"notice: {n}", file=sys.stderr)
    if not quiet:
        kinds = {
            "features": sum(isinstance(a, FeatureDef) for a in assets),
            "data sources": sum(isinstance(a, DataSourceDef) for a in assets),
            "models": sum(isinstance(a, ModelDef) for a in assets),
        }
        detail = ", ".join(f"{n} {k}" for k, n in kinds.items())
        verdict = "OK" if not errors else f"{len(errors)} error(s)"
        print(f"{len(assets)} asset(s) ({detail}): {verdict}")
    return 1 if errors else 0
