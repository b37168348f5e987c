"""Features declared with ``@feature``: the callable handle the decorator returns.

Decision (documented in the package docstring): ``@feature`` returns a small **wrapper** that
is still the function — calling it calls the function, ``functools.update_wrapper`` copies its
name, docstring and module and sets ``__wrapped__`` (so ``inspect`` finds the source) — rather
than the bare function with attributes bolted on. The wrapper buys notebook comfort and typing:
a repr that says what the feature is, and ``.replay()``, ``.manifest()``, ``.export()``,
``.plot()`` as real, type-checked methods. The registry records the definition; the handle only
points at it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from raptor.api.assets import FeatureDef
from raptor.api.names import FQN, Selector, parse_selector
from raptor.api.primitives import Primitive
from raptor.api.timeutil import format_duration
from raptor.engine.programs import Program
from raptor.sdk.source import FunctionSource

if TYPE_CHECKING:
    import pandas as pd

    from raptor.sdk.data_sources import DataSource
    from raptor.sdk.registry import Registry

__all__ = ["Feature"]


class Feature:
    """A feature: call it like the function; replay, export and plot it in a notebook."""

    __wrapped__: Callable[..., Any]

    def __init__(
        self,
        func: Callable[..., Any],
        definition: FeatureDef,
        program: Program,
        source: FunctionSource,
        data_source: DataSource | None,
        markers: Any,
        registry: Registry,
    ) -> None:
        functools.update_wrapper(self, func)
        self.definition = definition
        self.program = program
        self.source = source
        self.data_source = data_source
        self.markers = markers
        self.registry = registry

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__wrapped__(*args, **kwargs)

    # -- identity -----------------------------------------------------------------------------

    @property
    def fqn(self) -> FQN:
        return self.definition.fqn

    @property
    def selector(self) -> Selector:
        return parse_selector(self.fqn)

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
    def primitive(self) -> Primitive:
        return self.definition.primitive

    @property
    def sourceless(self) -> bool:
        return self.data_source is None

    def columns(self) -> list[str]:
        """The value columns of :meth:`replay`: ``<fqn>``, ``<fqn>+<fn>``, ``<fqn>@-<i>``."""
        d = self.definition
        if d.aggr:
            return [f"{d.fqn}+{fn.value}" for fn in d.aggr]
        cols = [str(d.fqn)]
        if d.keep_previous is not None and self.data_source is not None:
            cols.extend(f"{d.fqn}@-{i}" for i in range(1, d.keep_previous.versions + 1))
        return cols

    # -- notebook -----------------------------------------------------------------------------

    def replay(self, at: pd.DataFrame | None = None, *, progress: bool | None = None) -> Any:
        """Run this feature's production program over its training data (SPEC 6, 8).

        Returns a DataFrame with ``timestamp``, the key columns and the value columns
        (:meth:`columns`), one row per event of the data source that produced a value (or per
        marker row for sourceless features), in event-time order. With ``at`` (a frame with a
        ``timestamp`` column and the key columns), returns the values at those points instead:
        point-in-time, never from the future.
        """
        from raptor.sdk.replay import ReplaySession

        session = ReplaySession(self.registry, progress=progress)
        return session.replay(self.fqn, at)

    def manifest(self) -> str:
        """The Feature manifest as YAML (what ``.export()`` writes)."""
        from raptor.sdk.export import to_yaml

        return to_yaml([self.definition])

    def export(self, path: str | Path = "out") -> Path:
        """Write this feature, the features it reads and their data sources to ``path``."""
        from raptor.sdk.export import export_assets

        return export_assets(self.registry, [self.definition], Path(path))

    def plot(self, frame: pd.DataFrame | None = None, *, entities: int = 5, ax: Any = None) -> Any:
        """Plot the replayed values over time (needs matplotlib: ``pip install raptor[plot]``)."""
        from raptor.sdk.plotting import plot_feature

        return plot_feature(self, frame, entities=entities, ax=ax)

    def describe(self) -> str:
        """One line: what this feature is."""
        d = self.definition
        keys = ", ".join(d.keys) or "global"
        parts = [f"{d.primitive.value}", f"keys=({keys})"]
        if d.aggr and d.window is not None:
            fns = "/".join(fn.value for fn in d.aggr)
            parts.append(
                f"{fns} over {format_duration(d.window.over)} every "
                f"{format_duration(d.window.granularity)}"
            )
        else:
            parts.append(
                f"fresh {format_duration(d.freshness)}, stale {format_duration(d.staleness)}"
            )
        if d.keep_previous is not None:
            parts.append(
                f"keeps {d.keep_previous.versions} previous "
                f"(over {format_duration(d.keep_previous.over)})"
            )
        source = f"from {d.data_source}" if d.data_source else "sourceless"
        deps = [str(s) for s in self.program.dependencies]
        if deps:
            source += f", reads {', '.join(deps)}"
        parts.append(source)
        return f"{d.fqn}: " + ", ".join(parts)

    def __repr__(self) -> str:
        return f"<Feature {self.describe()}>"

    def _repr_markdown_(self) -> str:
        doc = f"\n\n{self.source.docstring}" if self.source.docstring else ""
        code = self.source.code.rstrip()
        return f"**Feature** `{self.describe()}`{doc}\n\n```python\n{code}\n```"
