"""raptor.api.manifests: wire types, resolve() rules, to_manifest() round trip."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raptor.api.assets import (
    ConfigValue,
    DataSourceDef,
    FeatureDef,
    KeepPrevious,
    ModelDef,
    Origin,
)
from raptor.api.manifests import API_VERSION, resolve, to_manifest
from raptor.api.names import FQN, fqn_of, parse_selector
from raptor.api.primitives import Primitive
from raptor.api.timeutil import MILLISECOND, MINUTE, SECOND
from raptor.api.windows import AggrFn, WindowSpec
from raptor.errors import ManifestError

CODE = "def handler(row, ctx) -> int:\n    return 1\n"


def feature(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "primitive": "int",
        "freshness": "1m",
        "staleness": "2m",
        "keys": ["user"],
        "builder": {"code": CODE},
    }
    base.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "Feature",
        "metadata": {"name": "hello-world"},
        "spec": base,
    }


def data_source(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"kind": "streaming", "config": [{"name": "kind", "value": "kafka"}]}
    base.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "DataSource",
        "metadata": {"name": "clicks", "namespace": "shop"},
        "spec": base,
    }


def model(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"freshness": "1h", "features": ["hello_world", "simple-aggr+sum"]}
    base.update(spec)
    return {
        "apiVersion": API_VERSION,
        "kind": "Model",
        "metadata": {"name": "model-basic", "namespace": "ml"},
        "spec": base,
    }


def error_of(doc: dict[str, Any], origin: Origin | None = None) -> ManifestError:
    with pytest.raises(ManifestError) as info:
        resolve(doc, origin or Origin())
    return info.value


# --- Feature basics ------------------------------------------------------------------------


def test_feature_resolves_with_microsecond_durations_and_fqn() -> None:
    f = resolve(feature(timeout="500ms"))
    assert isinstance(f, FeatureDef)
    assert f.fqn == "default.hello_world"
    assert (f.namespace, f.name) == ("default", "hello-world")
    assert (f.freshness, f.staleness, f.timeout) == (MINUTE, 2 * MINUTE, 500 * MILLISECOND)
    assert f.primitive is Primitive.INT
    assert f.keys == ("user",)
    assert f.code == CODE
    assert not f.windowed


def test_error_message_contains_file_index_resource_and_field() -> None:
    doc = feature(freshness="soon")
    doc["metadata"]["namespace"] = "shop"
    err = error_of(doc, Origin("a.yaml", 2))
    assert (err.file, err.index, err.resource, err.field) == (
        "a.yaml",
        2,
        "Feature/shop/hello-world",
        "spec.freshness",
    )
    text = str(err)
    for part in ("a.yaml", "document 2", "Feature/shop/hello-world", "spec.freshness", "soon"):
        assert part in text


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(extra=1), "extra"),
        (lambda d: d["spec"].update(colour="red"), "spec.colour"),
        (
            lambda d: d["spec"].update(keepPrevious={"versions": 1, "over": "1m", "x": 1}),
            "spec.keepPrevious.x",
        ),
        (
            lambda d: d["spec"].update(dataSource={"name": "a", "nmespace": "b"}),
            "spec.dataSource.nmespace",
        ),
    ],
)
def test_unknown_fields_are_rejected_with_their_path(mutate: Any, field: str) -> None:
    doc = feature()
    mutate(doc)
    err = error_of(doc)
    assert err.field == field
    assert "unknown field" in err.message
    assert "expected one of" in err.message


def test_unknown_field_in_datasource_config_entry_is_rejected() -> None:
    err = error_of(data_source(config=[{"name": "a", "value": "b", "vlaue": "c"}]))
    assert err.field == "spec.config[0].vlaue"


def test_metadata_accepts_object_meta_fields_and_ignores_unknown_ones() -> None:
    doc = feature()
    doc["metadata"].update(
        uid="1234",
        resourceVersion="42",
        generation=3,
        creationTimestamp="2024-01-01T00:00:00Z",
        finalizers=["raptor"],
        ownerReferences=[{"kind": "X", "name": "y"}],
        managedFields=[{"manager": "kubectl"}],
        labels={"team": "ml"},
        annotations={"a8r.io/owner": "@me"},
        somethingNew={"a": 1},
    )
    doc["status"] = {"fqn": "default.hello_world", "conditions": []}
    f = resolve(doc)
    assert f.labels == {"team": "ml"}
    assert f.annotations == {"a8r.io/owner": "@me"}


def test_missing_metadata_name_is_an_error() -> None:
    doc = feature()
    doc["metadata"] = {"namespace": "x"}
    assert error_of(doc).field == "metadata.name"


def test_invalid_name_is_an_error() -> None:
    doc = feature()
    doc["metadata"]["name"] = "hello world"
    err = error_of(doc)
    assert err.field == "metadata.name"
    assert "hello-world" in err.message  # says what is expected


def test_wrong_type_names_path_and_types() -> None:
    err = error_of(feature(keys=["a", 3]))
    assert err.field == "spec.keys[1]"
    assert "expected a string, got an integer" in err.message


@pytest.mark.parametrize("field", ["freshness", "staleness", "timeout"])
@pytest.mark.parametrize("bad", ["10", "1x", "-5s", "", "ten seconds"])
def test_bad_durations_name_the_field(field: str, bad: str) -> None:
    err = error_of(feature(**{field: bad}))
    assert err.field == f"spec.{field}"
    assert "duration" in err.message


def test_zero_as_yaml_int_is_a_duration() -> None:
    assert resolve(feature(timeout=0)).timeout == 0


def test_bad_primitive_is_an_error_listing_choices() -> None:
    err = error_of(feature(primitive="double"))
    assert err.field == "spec.primitive"
    assert "[]timestamp" in err.message


def test_missing_keys_field_is_an_error_but_empty_keys_are_fine() -> None:
    doc = feature()
    del doc["spec"]["keys"]
    err = error_of(doc)
    assert err.field == "spec.keys"
    assert "missing" in err.message
    assert resolve(feature(keys=[])).keys == ()


def test_duplicate_keys_are_an_error() -> None:
    assert error_of(feature(keys=["a", "a"])).field == "spec.keys[1]"


@pytest.mark.parametrize("code", [None, "", "   \n"])
def test_missing_or_empty_code_is_an_error(code: str | None) -> None:
    builder = {} if code is None else {"code": code}
    err = error_of(feature(builder=builder))
    assert err.field == "spec.builder.code"


def test_builder_extras_are_preserved_and_known_fields_parsed() -> None:
    f = resolve(
        feature(
            builder={
                "kind": "rest",
                "runtime": "py311",
                "packages": ["numpy"],
                "code": CODE,
                "url": "http://x/{keys}",
                "retries": {"max": 3},
            }
        )
    )
    assert isinstance(f, FeatureDef)
    assert f.builder_kind == "rest"
    assert (f.runtime, f.packages) == ("py311", ("numpy",))
    assert f.builder_extra == {"url": "http://x/{keys}", "retries": {"max": 3}}


# --- freshness / staleness / keepPrevious ---------------------------------------------------


def test_missing_freshness_is_an_error() -> None:
    doc = feature()
    del doc["spec"]["freshness"]
    assert error_of(doc).field == "spec.freshness"


def test_missing_staleness_defaults_to_freshness() -> None:
    doc = feature()
    del doc["spec"]["staleness"]
    f = resolve(doc)
    assert f.staleness == f.freshness == MINUTE


def test_staleness_shorter_than_freshness_is_an_error() -> None:
    err = error_of(feature(freshness="1h", staleness="1m"))
    assert err.field == "spec.staleness"
    assert ">= freshness" in err.message


def test_keep_previous_is_resolved() -> None:
    f = resolve(feature(keepPrevious={"versions": 3, "over": "1h"}))
    assert isinstance(f, FeatureDef)
    assert f.keep_previous == KeepPrevious(3, 60 * MINUTE)


@pytest.mark.parametrize(
    ("kp", "field"),
    [
        ({"versions": 0, "over": "1h"}, "spec.keepPrevious.versions"),
        ({"versions": 1, "over": "0s"}, "spec.keepPrevious.over"),
        ({"versions": 1, "over": "1 hour"}, "spec.keepPrevious.over"),
        ({"versions": 1}, "spec.keepPrevious.over"),
    ],
)
def test_invalid_keep_previous_is_an_error(kp: dict[str, Any], field: str) -> None:
    assert error_of(feature(keepPrevious=kp)).field == field


def test_data_source_reference_defaults_to_the_feature_namespace() -> None:
    doc = feature(dataSource={"name": "json-placeholder"})
    doc["metadata"]["namespace"] = "shop"
    assert resolve(doc).data_source == "shop.json_placeholder"  # type: ignore[union-attr]
    doc["spec"]["dataSource"]["namespace"] = "other-ns"
    assert resolve(doc).data_source == "other_ns.json_placeholder"  # type: ignore[union-attr]


# --- aggregations ---------------------------------------------------------------------------


def test_aggregation_window_from_granularity_and_staleness() -> None:
    f = resolve(
        feature(
            freshness="10s",
            staleness="1m",
            builder={
                "code": CODE,
                "aggr": ["SUM", "Count", "mean", "avg", "sum"],
                "aggrGranularity": "10s",
            },
        )
    )
    assert isinstance(f, FeatureDef)
    assert f.aggr == (AggrFn.SUM, AggrFn.COUNT, AggrFn.AVG)  # mean = avg, duplicates removed
    assert f.window == WindowSpec(10 * SECOND, MINUTE)
    assert (f.freshness, f.staleness) == (10 * SECOND, MINUTE)
    assert f.windowed


def test_aggregation_granularity_defaults_to_freshness() -> None:
    f = resolve(feature(freshness="10s", staleness="1m", builder={"code": CODE, "aggr": ["max"]}))
    assert f.window == WindowSpec(10 * SECOND, MINUTE)  # type: ignore[union-attr]


def test_windowed_freshness_becomes_the_granularity_with_a_warning() -> None:
    warnings: list[str] = []
    doc = feature(
        freshness="5s",
        staleness="1m",
        builder={"code": CODE, "aggr": ["sum"], "aggrGranularity": "10s"},
    )
    f = resolve(doc, warnings=warnings)
    assert f.freshness == 10 * SECOND  # type: ignore[union-attr]
    assert len(warnings) == 1
    assert "Feature default/hello-world" in warnings[0]


def test_windowed_feature_with_granularity_needs_no_freshness() -> None:
    doc = feature(
        staleness="1m", builder={"code": CODE, "aggr": ["count"], "aggrGranularity": "1s"}
    )
    del doc["spec"]["freshness"]
    assert resolve(doc).freshness == SECOND  # type: ignore[union-attr]


def test_aggregation_on_a_string_is_an_error_except_count() -> None:
    err = error_of(feature(primitive="string", builder={"code": CODE, "aggr": ["count", "sum"]}))
    assert err.field == "spec.builder.aggr[1]"
    assert "int or float" in err.message
    ok = resolve(feature(primitive="string", builder={"code": CODE, "aggr": ["count"]}))
    assert ok.aggr == (AggrFn.COUNT,)  # type: ignore[union-attr]


def test_aggregation_on_a_list_is_an_error() -> None:
    err = error_of(feature(primitive="[]int", builder={"code": CODE, "aggr": ["count"]}))
    assert err.field == "spec.builder.aggr[0]"
    assert "list" in err.message


def test_unknown_aggregation_is_an_error() -> None:
    err = error_of(feature(builder={"code": CODE, "aggr": ["sum", "median"]}))
    assert err.field == "spec.builder.aggr[1]"
    assert "median" in err.message


def test_aggregation_needs_staleness_at_least_the_granularity() -> None:
    doc = feature(builder={"code": CODE, "aggr": ["sum"]})
    del doc["spec"]["staleness"]
    assert error_of(doc).field == "spec.staleness"
    err = error_of(
        feature(freshness="1m", staleness="10s", builder={"code": CODE, "aggr": ["sum"]})
    )
    assert err.field == "spec.staleness"


def test_aggregation_with_keep_previous_is_an_error() -> None:
    doc = feature(
        builder={"code": CODE, "aggr": ["sum"]}, keepPrevious={"versions": 1, "over": "1m"}
    )
    assert error_of(doc).field == "spec.keepPrevious"


def test_granularity_without_aggregation_is_an_error() -> None:
    err = error_of(feature(builder={"code": CODE, "aggrGranularity": "10s"}))
    assert err.field == "spec.builder.aggrGranularity"


def test_zero_granularity_is_an_error() -> None:
    doc = feature(builder={"code": CODE, "aggr": ["sum"], "aggrGranularity": "0s"})
    assert error_of(doc).field == "spec.builder.aggrGranularity"


# --- DataSource -----------------------------------------------------------------------------


def test_data_source_resolves_config_values_and_secret_refs() -> None:
    d = resolve(
        data_source(
            config=[
                {"name": "brokers", "value": ":9093"},
                {"name": "body", "value": None},
                {"name": "password", "secretKeyRef": {"name": "kafka", "key": "pw"}},
            ],
            keyFields=["client_id"],
            timestampField="ts",
            schema={"type": "object"},
            replicas=2,
            resources={"limits": {"cpu": "1"}},
        )
    )
    assert isinstance(d, DataSourceDef)
    assert d.fqn == "shop.clicks"
    assert d.config == (
        ConfigValue("brokers", ":9093"),
        ConfigValue("body", None),
        ConfigValue("password", secret_name="kafka", secret_key="pw"),
    )
    assert d.config_value("brokers") == ":9093"
    assert (d.key_fields, d.timestamp_field, d.replicas) == (("client_id",), "ts", 2)
    assert d.schema == {"type": "object"}
    assert d.resources == {"limits": {"cpu": "1"}}


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "a"},
        {"name": "a", "value": "x", "secretKeyRef": {"name": "s", "key": "k"}},
    ],
)
def test_config_entry_needs_exactly_one_of_value_or_secret(entry: dict[str, Any]) -> None:
    err = error_of(data_source(config=[entry]))
    assert err.field == "spec.config[0]"
    assert "exactly one" in err.message


def test_secret_key_ref_needs_a_key() -> None:
    err = error_of(data_source(config=[{"name": "a", "secretKeyRef": {"name": "s"}}]))
    assert err.field == "spec.config[0].secretKeyRef.key"


def test_data_source_kind_is_required() -> None:
    doc = data_source()
    del doc["spec"]["kind"]
    assert error_of(doc).field == "spec.kind"


def test_repeated_config_names_are_an_error() -> None:
    doc = data_source(config=[{"name": "a", "value": "1"}, {"name": "a", "value": "2"}])
    assert error_of(doc).field == "spec.config[1].name"


# --- Model ----------------------------------------------------------------------------------


def test_model_resolves_selectors_in_its_namespace() -> None:
    m = resolve(
        model(
            staleness="2h",
            labels=["default.fraud"],
            keys=["user"],
            modelFramework="sklearn",
            modelFrameworkVersion=1.0,
            storageURI="s3://b/m",
            modelServer="builtin",
            inferenceConfig=[{"name": "region", "value": "eu"}],
            trainingCode=None,
        )
    )
    assert isinstance(m, ModelDef)
    assert m.fqn == "ml.model_basic"
    assert m.features == (
        parse_selector("ml.hello_world"),
        parse_selector("ml.simple_aggr+sum"),
    )
    assert m.key_feature == m.features[0]
    assert m.labels_features == (parse_selector("default.fraud"),)
    assert m.model_framework_version == "1.0"
    assert m.storage_uri == "s3://b/m"
    assert m.inference_config == (ConfigValue("region", "eu"),)
    assert m.training_code is None


def test_model_with_a_bad_selector_names_the_feature_index() -> None:
    err = error_of(model(features=["ok", "bad selector!"]))
    assert err.field == "spec.features[1]"
    assert "bad selector!" in err.message


def test_model_needs_a_feature() -> None:
    assert error_of(model(features=[])).field == "spec.features"


def test_model_key_feature_is_parsed() -> None:
    m = resolve(model(keyFeature="simple_aggr+sum"))
    assert m.key_feature == parse_selector("ml.simple_aggr+sum")  # type: ignore[union-attr]


def test_unknown_model_server_is_a_warning_not_an_error() -> None:
    warnings: list[str] = []
    m = resolve(model(modelServer="sagemaker-ack"), warnings=warnings)
    assert m.model_server == "sagemaker-ack"  # type: ignore[union-attr]
    assert warnings == [
        "Model ml/model-basic: modelServer 'sagemaker-ack' is not available here; the model "
        "will not be served (available: builtin, kserve, mlserver, triton)"
    ]


def test_storage_uri_is_spelled_as_upstream() -> None:
    assert error_of(model(storageUri="s3://x")).field == "spec.storageUri"


# --- apiVersion / kind / shape --------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value"), [("apiVersion", "k8s.raptor.ml/v1"), ("kind", "Features"), ("kind", None)]
)
def test_wrong_api_version_or_kind_is_an_error(key: str, value: Any) -> None:
    doc = feature()
    doc[key] = value
    err = error_of(doc)
    assert err.field == key
    assert "expected" in err.message


def test_non_mapping_document_is_an_error() -> None:
    with pytest.raises(ManifestError, match="mapping"):
        resolve(["not", "a", "mapping"])  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    path=st.sampled_from(
        ["spec", "spec.builder", "metadata", "spec.keepPrevious", "spec.dataSource"]
    ),
    key=st.sampled_from(
        [
            "primitive",
            "freshness",
            "staleness",
            "keys",
            "builder",
            "aggr",
            "aggrGranularity",
            "code",
            "name",
            "namespace",
            "versions",
            "over",
        ]
    ),
    value=json_values,
)
def test_resolve_raises_only_manifest_errors(path: str, key: str, value: Any) -> None:
    doc = feature(
        builder={"code": CODE, "aggr": ["sum"]},
        keepPrevious={"versions": 1, "over": "1m"},
        dataSource={"name": "src"},
    )
    target: Any = doc
    for part in path.split("."):
        target = target[part]
    target[key] = value
    with contextlib.suppress(ManifestError):
        resolve(doc)


# --- to_manifest round trip -----------------------------------------------------------------


def without_origin(asset: Any) -> Any:
    from dataclasses import replace

    return replace(asset, origin=Origin())


def test_to_manifest_is_camel_case_with_go_durations() -> None:
    doc = feature(
        timeout="1500ms",
        keepPrevious={"versions": 2, "over": "90m"},
        dataSource={"name": "clicks"},
        builder={"code": CODE, "kind": "streaming", "topic": "x"},
    )
    m = to_manifest(resolve(doc))
    spec = m["spec"]
    assert m["apiVersion"] == API_VERSION
    assert m["metadata"] == {"name": "hello-world", "namespace": "default"}
    assert spec["timeout"] == "1.5s"
    assert spec["keepPrevious"] == {"versions": 2, "over": "1h30m"}
    assert spec["dataSource"] == {"name": "clicks"}
    assert spec["builder"] == {"topic": "x", "kind": "streaming", "code": CODE}


@pytest.mark.parametrize(
    "doc",
    [
        feature(),
        feature(
            primitive="float",
            builder={"code": CODE, "aggr": ["avg", "max"], "aggrGranularity": "1s"},
        ),
        data_source(
            config=[
                {"name": "p", "secretKeyRef": {"name": "s", "key": "k"}},
                {"name": "b", "value": None},
            ],
            schema="https://x/y.proto#Click",
        ),
        model(
            labels=["x"],
            keys=["a"],
            modelServer="sagemaker-ack",
            modelFrameworkVersion="1.0-1",
            storageURI="file:///m",
            inferenceConfig=[{"name": "a", "value": "b"}],
            trainingCode="x",
        ),
    ],
)
def test_to_manifest_round_trips_through_resolve(doc: dict[str, Any]) -> None:
    asset = resolve(doc, Origin("x.yaml", 1), [])
    again = resolve(copy.deepcopy(to_manifest(asset)), warnings=[])
    assert again == without_origin(asset)


names = st.from_regex(r"\A[a-z0-9]{1,6}(-[a-z0-9]{1,4}){0,2}\Z")
namespaces = st.from_regex(r"\A[a-z0-9]{1,6}(_[a-z0-9]{1,4}){0,1}\Z")
durations = st.integers(min_value=0, max_value=400 * 3600 * SECOND)
builder_extra = st.dictionaries(
    st.from_regex(r"\A[a-z_]{1,8}\Z").filter(
        lambda k: k not in {"kind", "aggr", "aggrGranularity", "runtime", "packages", "code"}
    ),
    json_values,
    max_size=3,
)


@st.composite
def feature_defs(draw: st.DrawFn) -> FeatureDef:
    ns, name = draw(namespaces), draw(names)
    primitive = draw(st.sampled_from(list(Primitive)))
    aggr: tuple[AggrFn, ...] = ()
    if not primitive.is_list and draw(st.booleans()):
        allowed = list(AggrFn) if primitive.numeric else [AggrFn.COUNT]
        aggr = tuple(draw(st.lists(st.sampled_from(allowed), min_size=1, unique=True)))
    window = keep = None
    if aggr:
        g = draw(st.integers(min_value=1, max_value=3600 * SECOND))
        window = WindowSpec(g, draw(st.integers(min_value=g, max_value=100 * g)))
        freshness, staleness = window.granularity, window.over
    else:
        freshness = draw(durations)
        staleness = freshness + draw(durations)
        if draw(st.booleans()):
            keep = KeepPrevious(draw(st.integers(1, 10)), draw(durations.filter(bool)))
    ds = draw(st.none() | st.tuples(namespaces, names))
    return FeatureDef(
        fqn=fqn_of(ns, name),
        namespace=ns,
        name=name,
        primitive=primitive,
        freshness=freshness,
        staleness=staleness,
        timeout=draw(durations),
        keys=tuple(draw(st.lists(st.from_regex(r"\A[a-z_]{1,6}\Z"), unique=True, max_size=3))),
        code=draw(st.text(min_size=1).filter(str.strip)),
        keep_previous=keep,
        data_source=None if ds is None else FQN(fqn_of(*ds)),
        builder_kind=draw(st.none() | st.sampled_from(["streaming", "rest", "sourceless"])),
        aggr=aggr,
        window=window,
        runtime=draw(st.none() | st.just("py311")),
        packages=tuple(draw(st.lists(st.sampled_from(["numpy", "scipy"]), unique=True))),
        builder_extra=draw(builder_extra),
        labels=draw(
            st.dictionaries(st.from_regex(r"\A[a-z]{1,5}\Z"), st.text(max_size=5), max_size=2)
        ),
        annotations=draw(st.dictionaries(st.just("a8r.io/owner"), st.text(max_size=5))),
    )


@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow])
@given(feature_defs())
def test_generated_feature_defs_round_trip(f: FeatureDef) -> None:
    assert resolve(to_manifest(f), warnings=[]) == f
