"""``raptor export FILE.py -o out/``: a module of SDK definitions → a folder of manifests.

The module is imported with a registry of its own (so nothing else registered in this process
leaks in), under its file's stem as module name (its ``if __name__ == "__main__":`` block does
not run) and with its folder on ``sys.path`` (sibling imports work). Every data source, feature
and model it defines is exported (:func:`raptor.sdk.export.export_registry`): models are
trained on their training data and saved next to their manifests. The folder is validated as
``raptor validate`` would before the command reports success.

Exit codes: 0 exported, 1 the definitions or the export are invalid (or the module raised),
2 the file does not exist, 3 the ``sdk`` extra (pandas...) is missing.
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path

__all__ = ["run_export"]


def run_export(module_path: str, out: str) -> int:
    """Import ``module_path`` and export everything it defines to ``out``."""
    path = Path(module_path)
    if not path.is_file():
        print(f"error: {module_path}: no such file", file=sys.stderr)
        return 2
    try:
        import pandas  # noqa: F401
    except ImportError:
        print(
            "error: raptor export needs the sdk extra: pip install 'raptor[sdk]'", file=sys.stderr
        )
        return 3
    from raptor.errors import RaptorError
    from raptor.sdk.export import export_registry
    from raptor.sdk.registry import Registry

    name = path.stem if path.stem.isidentifier() else "raptor_export_module"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        print(f"error: {module_path}: not a Python module", file=sys.stderr)
        return 1
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        with Registry() as registry:
            try:
                spec.loader.exec_module(module)
            except RaptorError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
            except Exception:
                print(f"error: importing {module_path} failed:", file=sys.stderr)
                traceback.print_exc()
                return 1
            if not len(registry):
                print(
                    f"error: {module_path} defines no data source, feature or model",
                    file=sys.stderr,
                )
                return 1
            try:
                target = export_registry(registry, Path(out))
            except (RaptorError, ValueError, TypeError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 1
    finally:
        sys.path.remove(folder)
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
    print(
        f"exported {len(registry.data_sources)} data source(s), {len(registry.features)} "
        f"feature(s), {len(registry.models)} model(s) to {target}"
    )
    return 0
