"""The registry: where decorators record data sources, features and models.

Explicit, kopf-style: decorators add to the *current* registry, which is the process-wide
default unless a block activated another one (``with Registry() as reg: ...``), so tests and
``raptor export`` each get their own. The current registry is a :class:`contextvars.ContextVar`,
so concurrent tasks and threads that activate registries do not see each other's.

Definitions are keyed by FQN. Re-running a notebook cell redefines an asset: the new definition
replaces the old one (features that depend on it see the new one at their next replay, since
dependencies are looked up by FQN). :meth:`Registry.dependency_order` orders features so that
every dependency comes first and raises :class:`~raptor.errors.DependencyCycleError` on a cycle.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING

from raptor.api.assets import Asset
from raptor.api.names import Selector, parse_selector
from raptor.engine.programs import find_cycle
from raptor.errors import DependencyCycleError

if TYPE_CHECKING:
    from raptor.sdk.data_sources import DataSource
    from raptor.sdk.features import Feature
    from raptor.sdk.models import Model

__all__ = ["Registry", "current_registry", "default_registry"]


class Registry:
    """Data sources, features and models by FQN, in definition order."""

    def __init__(self) -> None:
        self.data_sources: dict[str, DataSource] = {}
        self.features: dict[str, Feature] = {}
        self.models: dict[str, Model] = {}
        self._tokens: list[contextvars.Token[Registry]] = []

    # -- activation ---------------------------------------------------------------------------

    def __enter__(self) -> Registry:
        self._tokens.append(_current.set(self))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _current.reset(self._tokens.pop())

    # -- recording ----------------------------------------------------------------------------

    def add_data_source(self, ds: DataSource) -> None:
        self.data_sources[ds.fqn] = ds

    def add_feature(self, feature: Feature) -> None:
        self.features[feature.fqn] = feature

    def add_model(self, model: Model) -> None:
        self.models[model.fqn] = model

    def clear(self) -> None:
        self.data_sources.clear()
        self.features.clear()
        self.models.clear()

    # -- lookups ------------------------------------------------------------------------------

    def selector(self, text: str, namespace: str = "default") -> Selector:
        return parse_selector(text, default_namespace=namespace)

    def lookup(self, selector: Selector) -> Feature | Model | None:
        return self.features.get(selector.fqn) or self.models.get(selector.fqn)

    def definitions(self) -> list[Asset]:
        """Every definition: data sources, then features (dependencies first), then models."""
        out: list[Asset] = [d.definition for d in self.data_sources.values()]
        out.extend(self.features[f].definition for f in self.dependency_order(self.features))
        out.extend(m.definition for m in self.models.values())
        return out

    def graph(self) -> dict[str, list[str]]:
        """Feature FQN → FQNs of the features it reads (registered ones only)."""
        return {
            fqn: [d.fqn for d in f.program.dependencies if d.fqn in self.features]
            for fqn, f in self.features.items()
        }

    def dependency_order(self, fqns: Iterable[str]) -> list[str]:
        """``fqns`` and every feature they read, transitively, dependencies first.

        Raises :class:`DependencyCycleError` when the features involved form a cycle."""
        graph = self.graph()
        cycle = find_cycle(graph)
        if cycle is not None:
            raise DependencyCycleError(cycle)
        out: list[str] = []
        seen: set[str] = set()

        def visit(fqn: str) -> None:
            if fqn in seen:
                return
            seen.add(fqn)
            for dep in graph.get(fqn, ()):
                visit(dep)
            out.append(fqn)

        for fqn in fqns:
            if fqn in graph:
                visit(fqn)
        return out

    def __iter__(self) -> Iterator[str]:
        yield from self.data_sources
        yield from self.features
        yield from self.models

    def __len__(self) -> int:
        return len(self.data_sources) + len(self.features) + len(self.models)

    def __repr__(self) -> str:
        return (
            f"<Registry: {len(self.data_sources)} data source(s), {len(self.features)} "
            f"feature(s), {len(self.models)} model(s)>"
        )


_default = Registry()
_current: contextvars.ContextVar[Registry] = contextvars.ContextVar(
    "raptor_registry", default=_default
)


def default_registry() -> Registry:
    """The process-wide registry decorators use when no other is active."""
    return _default


def current_registry() -> Registry:
    """The registry decorators record into right now."""
    return _current.get()
