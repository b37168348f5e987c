"""The SDK decorators (SPEC 6), with upstream Raptor's parameters and defaults.

``@feature`` and ``@model`` go on top; the option decorators (``@aggregation``, ``@freshness``,
``@keep_previous``, ``@runtime``, ``@namespace``, ``@labels``; in :mod:`raptor.sdk.options`,
re-exported here) go below them, record an option on the function and return it unchanged.
``@data_source`` reads ``@namespace`` and ``@labels``. ``@feature``/``@model`` then check the whole
definition **at decoration time** — a bad definition raises :class:`DefinitionError` naming the
file and line — compile the program exactly as production will, and record it in the current
registry (:func:`raptor.sdk.registry.current_registry`).

Checks made here (besides everything the manifest and the engine's program loader check):
a missing ``@freshness``; ``@aggregation`` on a non-numeric or list type (``count`` excepted);
a selector read with ``ctx.get_feature`` that is malformed, not defined yet, has no such
``+fn`` or ``@-N``, or closes a dependency cycle; names the function reads from its module
(production runs the function alone); keys missing from the data source's fields; a trainer
that does not take exactly one ``TrainingContext``.
"""

from __future__ import annotations

import ast
import inspect
import re
import typing
from collections.abc import Callable, Sequence
from typing import Any

from raptor.api.assets import DataSourceDef, FeatureDef, ModelDef
from raptor.api.names import Selector, fqn_of, normalize_name, parse_selector
from raptor.engine.catalog import check_dependency
from raptor.engine.programs import compile_program, find_cycle
from raptor.errors import ManifestError, SelectorError
from raptor.sdk.artifacts import normalize_framework
from raptor.sdk.checks import (
    check_dependencies,
    check_free_names,
    check_trainer,
    fail,
    import_names,
    round_trip,
    timing,
)
from raptor.sdk.data_sources import DataSource, json_schema, typed_dict_fields
from raptor.sdk.features import Feature
from raptor.sdk.models import Model
from raptor.sdk.options import (
    aggregation,
    freshness,
    keep_previous,
    labels,
    name_of,
    namespace,
    options_of,
    runtime,
)
from raptor.sdk.registry import Registry, current_registry
from raptor.sdk.source import FunctionSource, function_source, location
from raptor.sdk.types import (
    PushConfig,
    RestConfig,
    StreamingConfig,
    primitive_of,
)

__all__ = [
    "aggregation",
    "data_source",
    "feature",
    "freshness",
    "keep_previous",
    "labels",
    "model",
    "namespace",
    "runtime",
]

DESCRIPTION = "a8r.io/description"
_K8S_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


# --- data sources -----------------------------------------------------------------------------


def _k8s_name(python_name: str) -> str:
    """``total_spend`` → ``total-spend``; ``BankTransaction`` → ``bank-transaction``."""
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", python_name)
    return re.sub(r"[-_]+", "-", text).strip("-").lower()


def _check_name(name: str, where: str, what: str) -> str:
    k8s = name.replace("_", "-").lower()
    if not _K8S_NAME.match(k8s):
        raise fail(
            where,
            what,
            f"{name!r} is not a valid name; use letters, digits and single '-' or '_' "
            "(or pass name=...)",
        )
    return k8s


def data_source(
    training_data: Any = None,
    keys: str | Sequence[str] | None = None,
    name: str | None = None,
    timestamp: str | None = None,
    production_config: StreamingConfig | RestConfig | PushConfig | None = None,
) -> Callable[[type], type]:
    """Declare a DataSource on a ``TypedDict`` class describing its rows.

    ``training_data``: a DataFrame (or CSV/Parquet path, or callable) of historical rows;
    ``keys``: the key fields; ``timestamp``: the event-time field (default ``timestamp`` if
    the rows have one); ``production_config``: ``StreamingConfig(...)``, ``RestConfig(...)``
    or ``PushConfig()`` (the default). Returns the class, with ``cls.raptor`` the record.
    """

    def decorate(cls: type) -> type:
        where = location(cls)
        label = name_of(cls)
        if not isinstance(cls, type) or not typing.is_typeddict(cls):
            raise fail(where, label, "@data_source decorates a TypedDict class of the row's fields")
        opts = options_of(cls)
        if opts.aggregation or opts.freshness or opts.keep_previous or opts.runtime:
            raise fail(where, label, "a data source takes only @namespace and @labels")
        registry = current_registry()
        k8s = _check_name(name or _k8s_name(cls.__name__), where, label)
        ns = opts.namespace or "default"
        fields = typed_dict_fields(cls)
        columns = _columns(training_data)
        known = set(fields) | set(columns or ())
        key_fields = _keys(keys)
        ts = timestamp
        if ts is None and "timestamp" in known:
            ts = "timestamp"
        for k in key_fields:
            if known and k not in known:
                raise fail(where, label, f"key {k!r} is not a field of the rows ({_show(known)})")
        if ts is not None and known and ts not in known:
            raise fail(
                where, label, f"timestamp {ts!r} is not a field of the rows ({_show(known)})"
            )
        if ts is None and training_data is not None:
            raise fail(
                where, label, "timestamp= must name the event-time field to replay training data"
            )
        config = production_config if production_config is not None else PushConfig()
        if not isinstance(config, StreamingConfig | RestConfig | PushConfig):
            raise fail(
                where,
                label,
                "production_config must be StreamingConfig(...), RestConfig(...) or PushConfig()",
            )
        try:
            entries = config.entries()
        except ValueError as exc:
            raise fail(where, label, str(exc)) from None
        definition = DataSourceDef(
            fqn=fqn_of(ns, k8s),
            namespace=normalize_name(ns),
            name=k8s,
            kind=config.data_source_kind,
            config=entries,
            key_fields=key_fields,
            timestamp_field=ts,
            schema=json_schema(cls),
            labels=opts.labels or {},
            annotations=_describe(cls.__doc__),
        )
        round_trip(definition, where, label)
        ds = DataSource(definition, cls, training_data, fields, where, registry)
        registry.add_data_source(ds)
        cls.raptor = ds  # type: ignore[attr-defined]
        return cls

    return decorate


def _columns(data: Any) -> tuple[str, ...] | None:
    cols = getattr(data, "columns", None)
    return None if cols is None else tuple(str(c) for c in cols)


def _show(names: set[str]) -> str:
    return ", ".join(sorted(names))


def _keys(keys: str | Sequence[str] | None) -> tuple[str, ...]:
    if keys is None:
        return ()
    if isinstance(keys, str):
        return (keys,)
    return tuple(keys)


def _describe(doc: str | None) -> dict[str, str]:
    if not doc or not doc.strip():
        return {}
    return {DESCRIPTION: inspect.cleandoc(doc)}


def _data_source_of(ref: Any, registry: Registry, ns: str, where: str, what: str) -> DataSource:
    ds = getattr(ref, "raptor", ref)
    if isinstance(ds, DataSource):
        return ds
    if isinstance(ref, str):
        found = registry.data_sources.get(fqn_of(ns, ref) if "." not in ref else ref)
        if found is not None:
            return found
        raise fail(where, what, f"data source {ref!r} is not defined")
    raise fail(where, what, "data_source= must be a @data_source class or its name")


# --- features ---------------------------------------------------------------------------------


def feature(
    keys: str | Sequence[str] | None = None,
    name: str | None = None,
    data_source: Any = None,
    sourceless_markers_df: Any = None,
) -> Callable[[Callable[..., Any]], Feature]:
    """Declare a Feature whose program is the decorated ``def f(row, ctx) -> T``.

    ``keys``: the entity keys (default: the data source's keys); ``data_source``: the
    ``@data_source`` class (or its name) whose rows feed it — without one the feature is
    sourceless (computed on request, e.g. from other features via ``ctx.get_feature``);
    ``sourceless_markers_df``: for sourceless features, the ``timestamp`` + keys rows to
    replay it at. Returns a callable :class:`~raptor.sdk.features.Feature`.
    """

    def decorate(func: Callable[..., Any]) -> Feature:
        what = f"feature {name_of(func)}"
        if isinstance(func, Feature | Model):
            raise fail(location(func), what, "@feature is applied twice")
        if not callable(func) or isinstance(func, type):
            raise fail(location(func), what, "@feature decorates a function def f(row, ctx)")
        src = _source(func, what)
        where = src.where
        opts = options_of(func)
        registry = current_registry()
        ns = opts.namespace or "default"
        k8s = _check_name(name or src.name, where, what)
        fqn = fqn_of(ns, k8s)
        if fqn in registry.models:
            raise fail(
                where, what, f"a model is already named {fqn}; a model is served as a feature"
            )
        ds = (
            None if data_source is None else _data_source_of(data_source, registry, ns, where, what)
        )
        if ds is not None and sourceless_markers_df is not None:
            raise fail(where, what, "sourceless_markers_df is for features without a data source")
        key_names = _keys(keys) if keys is not None else (ds.keys if ds is not None else None)
        if key_names is None:
            raise fail(where, what, "keys= is required (the entity keys, e.g. keys='customer_id')")
        if ds is not None:
            known = set(ds.fields) | set(ds.columns() or ())
            for k in key_names:
                if known and k not in known:
                    raise fail(
                        where,
                        what,
                        f"key {k!r} is not a field of data source {ds.fqn} ({_show(known)}); "
                        "production reads the keys from the row",
                    )
        if len(src.params) != 2 or src.tree.args.vararg or src.tree.args.kwonlyargs:
            raise fail(where, what, "the function must take exactly two parameters (row, ctx)")
        primitive = primitive_of(src.tree.returns)
        if primitive is None:
            shown = ast.unparse(src.tree.returns) if src.tree.returns is not None else "nothing"
            raise fail(
                where,
                what,
                f"the return annotation is {shown}; annotate it -> int, float, str, bool, "
                "datetime or list[...] (it is the feature's primitive)",
            )
        fresh, stale, timeout, aggr, window = timing(opts, primitive, where, what)
        packages, env = opts.runtime or ((), None)
        try:
            program = compile_program(
                src.code,
                fqn=fqn,
                namespace=normalize_name(ns),
                primitive=primitive,
                keys=key_names,
                allowed_imports=import_names(packages),
            )
        except ManifestError as exc:
            raise fail(where, what, exc.message.removeprefix(f"feature {fqn}: ")) from None
        check_free_names(src, func, program, what)
        check_dependencies(program, ds, registry, fqn, where, what)
        definition = FeatureDef(
            fqn=fqn,
            namespace=program.namespace,
            name=k8s,
            primitive=primitive,
            freshness=fresh,
            staleness=stale,
            timeout=timeout,
            keys=tuple(key_names),
            code=src.code,
            keep_previous=opts.keep_previous,
            data_source=None if ds is None else ds.definition.fqn,
            aggr=aggr,
            window=window,
            runtime=env,
            packages=packages,
            labels=opts.labels or {},
            annotations=_describe(src.docstring),
        )
        round_trip(definition, where, what)
        handle = Feature(func, definition, program, src, ds, sourceless_markers_df, registry)
        previous = registry.features.get(fqn)
        registry.add_feature(handle)
        cycle = find_cycle(registry.graph())
        if cycle is not None:
            if previous is None:
                del registry.features[fqn]
            else:
                registry.features[fqn] = previous
            raise fail(where, what, "dependency cycle: " + " -> ".join([*cycle, cycle[0]]))
        return handle

    return decorate


def _source(func: Callable[..., Any], what: str) -> FunctionSource:
    try:
        return function_source(func)
    except OSError:
        raise fail(
            location(func),
            what,
            "cannot read the function's source (defined in a plain interpreter or by exec?); "
            "Raptor exports the source as the production program",
        ) from None
    except (SyntaxError, ValueError) as exc:
        raise fail(location(func), what, str(exc)) from None


# --- models -----------------------------------------------------------------------------------


def _selectors(
    items: Sequence[Any], ns: str, registry: Registry, where: str, what: str, field: str
) -> list[tuple[str, Selector]]:
    out: list[tuple[str, Selector]] = []
    for item in items:
        if isinstance(item, Feature):
            if len(item.definition.aggr) > 1:
                choices = ", ".join(f"'{item.name}+{f.value}'" for f in item.definition.aggr)
                raise fail(
                    where,
                    what,
                    f"{field}: {item.fqn} has several aggregations; name one ({choices})",
                )
            text = item.name.replace("-", "_") if item.namespace == ns else str(item.fqn)
        elif isinstance(item, str):
            text = item
        else:
            raise fail(where, what, f"{field}: expected selectors or features, got {item!r}")
        try:
            sel = parse_selector(text, default_namespace=ns)
        except SelectorError as exc:
            raise fail(where, what, f"{field}: {exc}") from None
        target = registry.features.get(sel.fqn)
        if target is None:
            raise fail(where, what, f"{field}: {text!r} names no defined feature")
        problem = check_dependency(sel, target.definition)
        if problem:
            raise fail(where, what, f"{field}: {problem}")
        out.append((text, sel))
    return out


def model(
    keys: str | Sequence[str] | None = None,
    input_features: Sequence[Any] | Any = (),
    input_labels: Sequence[Any] | Any = (),
    model_framework: str = "sklearn",
    model_server: str | None = None,
    key_feature: Any = None,
) -> Callable[[Callable[..., Any]], Model]:
    """Declare a Model trained by the decorated ``def train(ctx: TrainingContext)``.

    ``input_features``: selectors (``'spend+sum'``) or features, in feature-vector order;
    ``input_labels``: the labels' selectors; ``key_feature``: whose events are the training
    rows (default the first feature); ``model_framework``: sklearn, xgboost, lightgbm or onnx;
    ``model_server``: ``builtin`` (default when omitted), ``kserve``, ``mlserver``...
    """

    def decorate(func: Callable[..., Any]) -> Model:
        what = f"model {name_of(func)}"
        if isinstance(func, Feature | Model):
            raise fail(location(func), what, "@model is applied to a feature or model")
        src = _source(func, what)
        where = src.where
        check_trainer(src, where, what)
        opts = options_of(func)
        if opts.aggregation or opts.keep_previous:
            raise fail(where, what, "a model takes no @aggregation or @keep_previous")
        if opts.freshness is None:
            raise fail(
                where, what, "@freshness(max_age=...) is missing (how long a prediction is fresh)"
            )
        registry = current_registry()
        ns = opts.namespace or "default"
        k8s = _check_name(src.name, where, what)
        fqn = fqn_of(ns, k8s)
        if fqn in registry.features:
            raise fail(
                where, what, f"a feature is already named {fqn}; a model is served as a feature"
            )
        feats = _selectors(_seq(input_features), ns, registry, where, what, "input_features")
        if not feats:
            raise fail(where, what, "input_features is empty; a model needs at least one feature")
        labs = _selectors(_seq(input_labels), ns, registry, where, what, "input_labels")
        if key_feature is None:
            key = feats[0]
        else:
            key = _selectors([key_feature], ns, registry, where, what, "key_feature")[0]
        try:
            framework = normalize_framework(model_framework)
        except ValueError as exc:
            raise fail(where, what, str(exc)) from None
        needed: list[str] = []
        for _, sel in [*feats, *labs, key]:
            for k in registry.features[sel.fqn].keys:
                if k not in needed:
                    needed.append(k)
        model_keys = _keys(keys) if keys is not None else tuple(needed)
        missing = [k for k in needed if k not in model_keys]
        if missing:
            raise fail(where, what, f"keys= lacks {', '.join(missing)}, which its features need")
        age, stale, timeout = opts.freshness
        definition = ModelDef(
            fqn=fqn,
            namespace=normalize_name(ns),
            name=k8s,
            freshness=age,
            staleness=stale if stale is not None else age,
            timeout=timeout,
            features=tuple(s for _, s in feats),
            key_feature=key[1],
            labels_features=tuple(s for _, s in labs),
            keys=model_keys,
            model_framework=framework,
            model_server=model_server,
            training_code=src.code,
            labels=opts.labels or {},
            annotations=_describe(src.docstring),
        )
        round_trip(definition, where, what)
        handle = Model(
            func,
            definition,
            src,
            [t for t, _ in feats],
            [t for t, _ in labs],
            key[0],
            registry,
        )
        registry.add_model(handle)
        return handle

    return decorate


def _seq(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | Feature):
        return [value]
    return list(value)
