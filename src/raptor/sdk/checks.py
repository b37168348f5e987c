"""Definition checks shared by the decorators: pure functions that raise
:class:`~raptor.sdk.types.DefinitionError` naming the Python location of the definition.

* :func:`check_free_names` — a program runs alone in production: names it reads from its
  module or closure must not exist there, or must be the very same objects production gives
  programs (``datetime`` is the *module* in programs).
* :func:`check_dependencies` — ``ctx.get_feature`` selectors must name defined features, with
  a configured ``+fn``/``@-N``; data-source features cannot read features (ingestion has no
  ``ctx.get_feature``).
* :func:`timing` — freshness/staleness/timeout/window from ``@freshness``/``@aggregation``.
* :func:`check_trainer` — a trainer takes exactly one ``TrainingContext``.
* :func:`round_trip` — the definition must survive manifest → resolve unchanged.
* :func:`import_names` — pip requirements → the top-level modules a program may import.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import inspect
import re
from collections.abc import Mapping, Sequence
from importlib import metadata as importlib_metadata
from types import FunctionType
from typing import TYPE_CHECKING, Any

from raptor.api.assets import DataSourceDef, FeatureDef, ModelDef
from raptor.api.manifests import resolve, to_manifest
from raptor.api.windows import AggrFn, WindowSpec
from raptor.engine.catalog import check_dependency
from raptor.engine.programs import Program
from raptor.errors import ManifestError
from raptor.sdk.source import FunctionSource, free_names
from raptor.sdk.types import DefinitionError

if TYPE_CHECKING:
    from raptor.sdk.data_sources import DataSource
    from raptor.sdk.options import Options
    from raptor.sdk.registry import Registry

__all__ = [
    "check_dependencies",
    "check_free_names",
    "check_trainer",
    "fail",
    "import_names",
    "round_trip",
    "timing",
]


def fail(where: str, what: str, message: str) -> DefinitionError:
    return DefinitionError(f"{where}: {what}: {message}")


def round_trip(definition: DataSourceDef | FeatureDef | ModelDef, where: str, what: str) -> None:
    """The definition must survive manifest → resolve unchanged (names, durations...)."""
    try:
        back = resolve(to_manifest(definition))
    except ManifestError as exc:
        raise fail(where, what, exc.message + (f" ({exc.field})" if exc.field else "")) from None
    if back != definition:  # pragma: no cover - a bug in to_manifest/resolve, not user error
        raise fail(where, what, "the definition does not survive a manifest round trip")


_IMPORT_NAMES = {"scikit-learn": "sklearn", "pyyaml": "yaml", "python-dateutil": "dateutil"}


@functools.cache
def _modules_by_distribution() -> dict[str, list[str]]:
    by_dist: dict[str, list[str]] = {}
    try:
        for module, dists in importlib_metadata.packages_distributions().items():
            for d in dists:
                by_dist.setdefault(d.lower().replace("_", "-"), []).append(module)
    except Exception:  # metadata of a broken install: fall back to the names as given
        return {}
    return by_dist


def import_names(packages: Sequence[str]) -> set[str]:
    """Top-level module names provided by pip requirements (``scikit-learn>=1`` → sklearn)."""
    out: set[str] = set()
    if not packages:
        return out
    by_dist = _modules_by_distribution()
    for req in packages:
        m = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", req)
        if m is None:
            continue
        dist = m.group(1).lower().replace("_", "-")
        out.update(by_dist.get(dist, ()))
        out.add(_IMPORT_NAMES.get(dist, dist.replace("-", "_")))
    return out


def _program_globals(program: Program) -> Mapping[str, Any]:
    func = getattr(program, "_func", None)
    return func.__globals__ if isinstance(func, FunctionType) else {}


def check_free_names(src: FunctionSource, func: Any, program: Program, what: str) -> None:
    """Names the function reads from outside itself (module globals, closure variables) must
    exist, identically, in production's program globals."""
    engine = _program_globals(program)
    builtins = engine.get("__builtins__", {})
    target = inspect.unwrap(func)
    user: dict[str, Any] = dict(getattr(target, "__globals__", {}))
    with contextlib.suppress(TypeError, ValueError):
        user.update(inspect.getclosurevars(target).nonlocals)
    missing: list[str] = []
    differ: list[str] = []
    for n in free_names(src.tree):
        if n in engine:
            if n in user and user[n] is not engine[n]:
                differ.append(n)
        elif not (isinstance(builtins, Mapping) and n in builtins):
            missing.append(n)
    if missing:
        raise fail(
            src.where,
            what,
            f"the program reads {', '.join(missing)} from outside the function; in production "
            "it runs alone, so define or import them inside the function",
        )
    if differ:
        hint = ""
        if "datetime" in differ:
            hint = (
                " (in programs `datetime` is the module: use datetime.datetime, or import "
                "it inside the function)"
            )
        raise fail(
            src.where,
            what,
            f"{', '.join(differ)} means something else in production than in this module{hint}",
        )


def timing(
    opts: Options, primitive: Any, where: str, what: str
) -> tuple[int, int, int, tuple[AggrFn, ...], WindowSpec | None]:
    """``(freshness, staleness, timeout, aggr, window)`` from the options."""
    if opts.aggregation is not None:
        fns, over, granularity = opts.aggregation
        if opts.keep_previous is not None:
            raise fail(where, what, "@keep_previous cannot be combined with @aggregation")
        if primitive.is_list:
            raise fail(where, what, f"@aggregation needs a scalar type, not {primitive.value}")
        for fn in fns:
            if fn is not AggrFn.COUNT and not primitive.numeric:
                raise fail(
                    where,
                    what,
                    f"@aggregation {fn.value} needs an int or float return type, not "
                    f"{primitive.value} (count works for any)",
                )
        timeout = 0
        if opts.freshness is not None:
            age, stale, timeout = opts.freshness
            if age != granularity or (stale is not None and stale != over):
                raise fail(
                    where,
                    what,
                    "@freshness conflicts with @aggregation: an aggregation's freshness is its "
                    "granularity and its staleness the window (drop @freshness)",
                )
        return granularity, over, timeout, fns, WindowSpec(granularity, over)
    if opts.freshness is None:
        raise fail(
            where,
            what,
            "@freshness(max_age=..., max_stale=...) is missing (or use @aggregation)",
        )
    age, stale, timeout = opts.freshness
    return age, stale if stale is not None else age, timeout, (), None


def check_dependencies(
    program: Program, ds: DataSource | None, registry: Registry, fqn: str, where: str, what: str
) -> None:
    deps = program.dependencies
    if ds is not None and (deps or program.dynamic_dependencies):
        raise fail(
            where,
            what,
            "a feature fed by a data source cannot read other features (production ingestion "
            "has no ctx.get_feature); read them in a sourceless feature instead",
        )
    for dep in deps:
        if dep.fqn == fqn:
            raise fail(where, what, f"the program reads itself ({dep}): a dependency cycle")
        target = registry.lookup(dep)
        if target is None:
            raise fail(
                where, what, f"ctx.get_feature({str(dep)!r}): {dep.fqn} is not defined (yet)"
            )
        problem = check_dependency(dep, target.definition)
        if problem:
            raise fail(where, what, f"ctx.get_feature: {problem}")


def check_trainer(src: FunctionSource, where: str, what: str) -> None:
    a = src.tree.args
    params = [*a.posonlyargs, *a.args]
    if len(params) != 1 or a.vararg or a.kwonlyargs or a.kwarg:
        raise fail(
            where,
            what,
            f"the trainer must take exactly one parameter (ctx: TrainingContext); it takes "
            f"({ast.unparse(a)})",
        )
    note = params[0].annotation
    if note is not None:
        text = ast.unparse(note).strip("'\"")
        if text.split(".")[-1] != "TrainingContext":
            raise fail(
                where, what, f"the trainer's parameter is annotated {text}, not TrainingContext"
            )
