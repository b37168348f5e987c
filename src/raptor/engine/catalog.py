"""The catalog: every deployed asset, checked together and compiled into runtime objects.

:func:`build_catalog` is pure (no I/O, no clock): it takes the resolved definitions of
:mod:`raptor.api.assets` and returns an immutable :class:`Catalog` plus one :class:`AssetStatus`
per asset. It is where the checks that need *all* assets live — the same code runs under
``raptor validate``, ``raptor up`` on every reload, and (later) the operator's admission:

* a Feature and a Model may not share a name (a model is served as a feature);
* the builder kind defaults to the DataSource's kind when a builder exists for it, else
  ``sourceless``; a DataSource that is referenced must exist;
* programs compile (policy lint, annotation vs primitive, static dependencies);
* selectors that programs and models depend on must fit their target (``+fn`` on a windowed
  feature with several functions, never on a plain one, ``@-N`` within ``keepPrevious``);
* dependency cycles are rejected (every feature on the cycle is marked invalid).

A broken asset does not stop the others: it gets ``ready=False`` and a reason, and the engine
answers requests for it with :class:`raptor.errors.NotReady`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from raptor.api.assets import Asset, DataSourceDef, FeatureDef, ModelDef
from raptor.api.names import FQN, Selector
from raptor.api.windows import AggrFn
from raptor.engine.programs import Program, compile_program, find_cycle
from raptor.errors import ManifestError, RaptorError
from raptor.state import WritePolicy

__all__ = [
    "BUILDER_KINDS",
    "COMPUTED_KINDS",
    "AssetStatus",
    "Catalog",
    "FeatureRuntime",
    "ModelRuntime",
    "build_catalog",
]

BUILDER_KINDS = frozenset({"streaming", "push", "rest", "sourceless"})
"""Feature builder kinds Raptor knows (``model`` is internal: models are served as features)."""

COMPUTED_KINDS = frozenset({"rest", "sourceless", "model"})
"""Kinds whose values are computed on request (SPEC 4.2) unless windowed."""

KNOWN_MODEL_SERVERS = frozenset({"builtin", "kserve", "mlserver", "triton"})


@dataclass(frozen=True, slots=True)
class AssetStatus:
    """What ``raptor up`` / the operator report for an asset."""

    kind: str
    fqn: str
    ready: bool
    reason: str = "Ready"
    message: str = ""
    origin: str = ""
    dependencies: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FeatureRuntime:
    """A deployed feature: its definition plus what the engine derives from it once."""

    defn: FeatureDef
    kind: str
    program: Program | None
    policy: WritePolicy
    computed: bool
    dependencies: tuple[Selector, ...]
    fqn: FQN = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fqn", self.defn.fqn)

    @property
    def single_fn(self) -> AggrFn | None:
        return self.defn.aggr[0] if len(self.defn.aggr) == 1 else None


@dataclass(frozen=True, slots=True)
class ModelRuntime:
    defn: ModelDef
    server: str
    dependencies: tuple[Selector, ...]

    @property
    def fqn(self) -> FQN:
        return self.defn.fqn


@dataclass(frozen=True)
class Catalog:
    """An immutable snapshot of the deployed assets. Replace, never mutate."""

    features: Mapping[str, FeatureRuntime] = field(default_factory=dict)
    models: Mapping[str, ModelRuntime] = field(default_factory=dict)
    data_sources: Mapping[str, DataSourceDef] = field(default_factory=dict)
    statuses: Mapping[str, AssetStatus] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def errors(self) -> list[AssetStatus]:
        return [s for s in self.statuses.values() if not s.ready]

    def features_of(self, data_source: str) -> list[FeatureRuntime]:
        """The ready features fed by a DataSource (by FQN)."""
        return [f for f in self.features.values() if f.defn.data_source == data_source]


def _where(a: Asset) -> str:
    o = a.origin
    if o.file is None:
        return ""
    return o.file if o.index is None else f"{o.file} (document {o.index})"


def _resource(a: Asset) -> str:
    kind = "DataSource" if isinstance(a, DataSourceDef) else a.kind
    return f"{kind}/{a.namespace}/{a.name}"


def _status_key(kind: str, fqn: str) -> str:
    return f"{kind}/{fqn}"


def check_dependency(sel: Selector, target: FeatureDef | ModelDef | None) -> str | None:
    """Why ``sel`` cannot be read from ``target`` (None when it can). Pure."""
    if target is None:
        return None
    if isinstance(target, ModelDef):
        if sel.aggr or sel.version:
            return f"{sel}: a model has no +fn or @-N"
        return None
    if sel.aggr:
        if not target.aggr:
            return f"{sel}: +{sel.aggr} on a feature that is not an aggregation"
        if AggrFn.parse(sel.aggr) not in target.aggr:
            fns = ", ".join(f.value for f in target.aggr)
            return f"{sel}: {target.fqn} has no +{sel.aggr} (it has {fns})"
    elif len(target.aggr) > 1:
        choices = ", ".join(f"{target.fqn}+{f.value}" for f in target.aggr)
        return f"{sel}: {target.fqn} has several aggregations; name one ({choices})"
    if sel.version:
        keep = target.keep_previous.versions if target.keep_previous else 0
        if sel.version > keep:
            return f"{sel}: {target.fqn} keeps {keep} previous version(s), not {sel.version}"
    return None


def build_catalog(assets: Iterable[Asset], *, allowed_imports: Iterable[str] = ()) -> Catalog:
    """Check all assets together and compile them. Pure: same input, same catalog."""
    allowed = frozenset(allowed_imports)
    features: dict[str, FeatureDef] = {}
    models: dict[str, ModelDef] = {}
    sources: dict[str, DataSourceDef] = {}
    statuses: dict[str, AssetStatus] = {}
    warnings: list[str] = []

    def fail(a: Asset, reason: str, message: str, deps: tuple[str, ...] = ()) -> None:
        kind = "DataSource" if isinstance(a, DataSourceDef) else a.kind
        statuses[_status_key(kind, a.fqn)] = AssetStatus(
            kind, a.fqn, False, reason, message, _where(a), deps
        )

    for a in assets:
        if isinstance(a, DataSourceDef):
            sources[a.fqn] = a
        elif isinstance(a, FeatureDef):
            features[a.fqn] = a
        else:
            models[a.fqn] = a

    for fqn in sorted(set(features) & set(models)):
        msg = (
            f"Feature {features[fqn].namespace}/{features[fqn].name} and Model "
            f"{models[fqn].namespace}/{models[fqn].name} share the name {fqn}; a model is "
            "served as a feature, so rename one of them"
        )
        fail(features.pop(fqn), "NameConflict", msg)
        fail(models.pop(fqn), "NameConflict", msg)

    for src in sources.values():
        statuses[_status_key("DataSource", src.fqn)] = AssetStatus(
            "DataSource", src.fqn, True, origin=_where(src)
        )

    # Compile programs and resolve kinds.
    compiled: dict[str, tuple[FeatureDef, str, Program]] = {}
    for f in features.values():
        try:
            kind = _builder_kind(f, sources)
            program = compile_program(
                f.code,
                fqn=f.fqn,
                namespace=f.namespace,
                primitive=f.primitive,
                keys=f.keys,
                allowed_imports=allowed | _import_names(f.packages),
            )
        except ManifestError as exc:
            err = exc.located(file=f.origin.file, index=f.origin.index, resource=_resource(f))
            fail(f, "InvalidProgram" if exc.field else "InvalidFeature", str(err))
            continue
        except RaptorError as exc:
            fail(f, "InvalidFeature", f"{_resource(f)}: {exc}")
            continue
        compiled[f.fqn] = (f, kind, program)

    # Dependencies: selectors must fit their targets.
    targets: dict[str, FeatureDef | ModelDef] = {**features, **models}
    graph: dict[str, list[str]] = {}
    bad: set[str] = set()
    for fqn, (f, _, program) in compiled.items():
        graph[fqn] = [d.fqn for d in program.dependencies]
        for dep in program.dependencies:
            problem = check_dependency(dep, targets.get(dep.fqn))
            if problem:
                fail(f, "InvalidDependency", f"{_resource(f)}: program reads {problem}")
                bad.add(fqn)
            elif dep.fqn not in targets:
                warnings.append(f"{_resource(f)}: program reads {dep.fqn}, which is not deployed")
    model_rts: dict[str, ModelRuntime] = {}
    for m in models.values():
        graph[m.fqn] = [s.fqn for s in m.features]
        server = m.model_server or "builtin"  # unknown servers are warned about at loading
        for sel in m.features:
            problem = check_dependency(sel, targets.get(sel.fqn))
            if problem:
                warnings.append(f"{_resource(m)}: feature {problem}")
            elif sel.fqn not in targets:
                warnings.append(f"{_resource(m)}: feature {sel.fqn} is not deployed")
        model_rts[m.fqn] = ModelRuntime(m, server, m.features)
        ready = server in KNOWN_MODEL_SERVERS
        statuses[_status_key("Model", m.fqn)] = AssetStatus(
            "Model",
            m.fqn,
            ready,
            "Ready" if ready else "ModelServerUnavailable",
            "" if ready else f"modelServer {server!r} is not available here",
            _where(m),
            tuple(dict.fromkeys(s.fqn for s in m.features)),
        )

    # Cycles: remove every node of a cycle until none is left.
    live = {k: [d for d in v if d in graph] for k, v in graph.items()}
    while (cycle := find_cycle(live)) is not None:
        for node in cycle:
            msg = "dependency cycle: " + " -> ".join([*cycle, cycle[0]])
            target = features.get(node) or models.get(node)
            if target is not None:
                fail(target, "DependencyCycle", f"{_resource(target)}: {msg}")
            bad.add(node)
            model_rts.pop(node, None)
            live.pop(node, None)
        live = {k: [d for d in v if d in live] for k, v in live.items()}

    runtimes: dict[str, FeatureRuntime] = {}
    for fqn, (f, kind, program) in compiled.items():
        if fqn in bad:
            continue
        keep = f.keep_previous
        policy = WritePolicy(
            staleness=f.staleness,
            versions=keep.versions if keep else 0,
            version_ttl=keep.over if keep else 0,
        )
        computed = kind in COMPUTED_KINDS and not f.windowed
        runtimes[fqn] = FeatureRuntime(f, kind, program, policy, computed, program.dependencies)
        statuses[_status_key("Feature", fqn)] = AssetStatus(
            "Feature",
            fqn,
            True,
            origin=_where(f),
            dependencies=tuple(dict.fromkeys(d.fqn for d in program.dependencies)),
        )

    return Catalog(
        features=MappingProxyType(runtimes),
        models=MappingProxyType(model_rts),
        data_sources=MappingProxyType(sources),
        statuses=MappingProxyType(statuses),
        warnings=tuple(warnings),
    )


def _import_names(packages: Iterable[str]) -> frozenset[str]:
    """Import names a ``@runtime(packages=[...])`` allows: ``scikit-learn>=1`` → ``sklearn``,
    ``scikit_learn``... (the pip name normalized, plus well-known import aliases). Pure."""
    out: set[str] = set()
    for spec in packages:
        name = re.split(r"[<>=!~\[; ]", spec.strip(), maxsplit=1)[0].lower()
        if name:
            out.add(name.replace("-", "_"))
            out.update(_IMPORT_ALIASES.get(name, ()))
    return frozenset(out)


_IMPORT_ALIASES = {
    "scikit-learn": ("sklearn",),
    "pyyaml": ("yaml",),
    "python-dateutil": ("dateutil",),
    "beautifulsoup4": ("bs4",),
    "pillow": ("PIL",),
    "opencv-python": ("cv2",),
}


def _builder_kind(f: FeatureDef, sources: Mapping[str, DataSourceDef]) -> str:
    """The builder kind: as written, else the DataSource's kind if known, else sourceless."""
    if f.data_source is not None and f.data_source not in sources:
        raise ManifestError(
            f"data source {f.data_source} is not deployed", field="spec.dataSource.name"
        )
    if f.builder_kind:
        kind = f.builder_kind.lower()
        if kind not in BUILDER_KINDS:
            raise ManifestError(
                f"unknown builder kind {f.builder_kind!r}; expected one of "
                + ", ".join(sorted(BUILDER_KINDS)),
                field="spec.builder.kind",
            )
        return kind
    if f.data_source is not None:
        src_kind = sources[f.data_source].kind.lower()
        if src_kind in BUILDER_KINDS:
            return src_kind
    return "sourceless"
