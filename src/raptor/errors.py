"""One exception tree for all of Raptor.

Every error Raptor raises on purpose derives from :class:`RaptorError`. Foreign errors (YAML,
Redis, gRPC...) are translated at the boundary that meets them (``raise X(...) from exc``), so
callers only ever catch these. HTTP and gRPC status codes are *not* here: ``raptor.server`` owns
the one table that maps these classes to wire statuses.

::

    RaptorError
    ├── ManifestError                 a manifest cannot be parsed or is invalid
    │   └── ProgramError              a feature program fails policy / annotation / loading
    ├── DependencyCycleError          features depend on each other in a cycle
    ├── NameConflictError             two assets claim one name (e.g. a Feature and a Model)
    ├── InvalidArgument               a request is malformed (bad selector, keys, value type...)
    │   ├── SelectorError
    │   ├── MissingKeyError
    │   └── ValueTypeError
    ├── NotFound                      unknown feature / namespace / data source
    ├── NotReady                      the asset exists but is not ready (invalid, unavailable)
    ├── ReadOnlyError                 a write to something that cannot be written (a model)
    ├── FeatureTimeout                nothing usable before the feature's timeout
    ├── ProgramRuntimeError           a feature program raised or returned garbage while running
    └── StateUnavailable              the state store cannot be reached in time
"""

from __future__ import annotations

__all__ = [
    "DependencyCycleError",
    "FeatureTimeout",
    "InvalidArgument",
    "ManifestError",
    "MissingKeyError",
    "NameConflictError",
    "NotFound",
    "NotReady",
    "ProgramError",
    "ProgramRuntimeError",
    "RaptorError",
    "ReadOnlyError",
    "SelectorError",
    "StateUnavailable",
    "ValueTypeError",
]


class RaptorError(Exception):
    """Root of every error Raptor raises on purpose."""


class ManifestError(RaptorError):
    """A manifest is malformed or invalid.

    ``location`` names where: ``file``, document ``index`` (0-based), ``resource``
    (``Kind/namespace/name``) and the dotted ``field`` path, each optional.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        index: int | None = None,
        resource: str | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.index = index
        self.resource = resource
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where: list[str] = []
        if self.file is not None:
            where.append(self.file)
        if self.index is not None:
            where.append(f"document {self.index}")
        if self.resource is not None:
            where.append(self.resource)
        if self.field:
            where.append(f"field {self.field}")
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message

    def located(
        self,
        *,
        file: str | None = None,
        index: int | None = None,
        resource: str | None = None,
    ) -> ManifestError:
        """Return a copy of this error with missing location parts filled in."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.file = self.file if self.file is not None else file
        clone.index = self.index if self.index is not None else index
        clone.resource = self.resource if self.resource is not None else resource
        Exception.__init__(clone, clone._render())
        return clone


class ProgramError(ManifestError):
    """A feature program is rejected at load time (syntax, policy, annotation)."""


class DependencyCycleError(RaptorError):
    """Features depend on each other in a cycle; ``cycle`` lists the FQNs in order."""

    def __init__(self, cycle: list[str]) -> None:
        self.cycle = cycle
        super().__init__("dependency cycle: " + " -> ".join([*cycle, cycle[0]]))


class NameConflictError(RaptorError):
    """Two assets claim the same fully qualified name."""


class InvalidArgument(RaptorError):
    """A request is malformed: the caller must change it."""


class SelectorError(InvalidArgument):
    """A selector does not parse, or asks for something the feature does not have."""


class MissingKeyError(InvalidArgument):
    """A key the feature needs is absent from the request."""


class ValueTypeError(InvalidArgument):
    """A value does not match the feature's primitive."""


class NotFound(RaptorError):
    """An unknown feature, model, namespace or data source."""


class ReadOnlyError(RaptorError):
    """A write aimed at something that cannot be written (a model's predictions)."""


class FeatureTimeout(RaptorError):
    """The feature's timeout passed with no usable value."""


class ProgramRuntimeError(RaptorError):
    """A feature program raised, timed out hard, or returned a value of the wrong shape."""


class StateUnavailable(RaptorError):
    """The state store could not be reached within the deadline."""


class NotReady(RaptorError):
    """The asset exists but is not ready (invalid, or what it needs is unavailable)."""
