"""Decorators: what they record, what they export, and the errors they raise at decoration time."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import TypedDict

import pandas as pd
import pytest

from raptor import (
    AggregationFunction,
    Context,
    PushConfig,
    RestConfig,
    StreamingConfig,
    TrainingContext,
    aggregation,
    data_source,
    feature,
    freshness,
    keep_previous,
    labels,
    model,
    namespace,
    runtime,
)
from raptor.api.manifests import resolve, to_manifest
from raptor.api.timeutil import HOUR, MINUTE
from raptor.api.windows import AggrFn
from raptor.engine.catalog import build_catalog
from raptor.errors import ManifestError
from raptor.sdk.features import Feature
from raptor.sdk.registry import Registry, current_registry, default_registry
from raptor.sdk.types import DefinitionError

FRAME = pd.DataFrame(
    {
        "customer_id": ["c1", "c2"],
        "at": pd.to_datetime(["2024-01-01T00:00:00Z", "2024-01-01T00:01:00Z"]),
        "amount": [1.5, 2.0],
        "merchant": ["m1", "m2"],
    }
)


@pytest.fixture
def reg() -> Registry:
    with Registry() as r:
        yield r


def _source() -> type:
    @data_source(training_data=FRAME, keys=["customer_id"], timestamp="at")
    class BankTransaction(TypedDict):
        """Card transactions."""

        customer_id: str
        at: str
        amount: float
        merchant: str

    return BankTransaction


def test_a_registry_block_keeps_definitions_out_of_the_default(reg: Registry) -> None:
    assert current_registry() is reg
    _source()
    assert "default.bank_transaction" in reg.data_sources
    assert "default.bank_transaction" not in default_registry().data_sources


def test_data_source_returns_the_class_with_its_record(reg: Registry) -> None:
    src = _source()
    ds = src.raptor  # type: ignore[attr-defined]
    assert isinstance(src, type)
    assert ds.definition.kind == "push"
    assert ds.definition.key_fields == ("customer_id",)
    assert ds.definition.timestamp_field == "at"
    assert ds.definition.schema["properties"]["amount"] == {"type": "number"}
    assert ds.definition.annotations["a8r.io/description"] == "Card transactions."
    assert "DataSource default.bank_transaction" in repr(ds)


def test_production_configs_become_data_source_kinds_and_config(reg: Registry) -> None:
    @data_source(
        keys="id",
        production_config=StreamingConfig(
            kind="kafka", brokers=["k1:9092", "k2:9092"], topics="tx"
        ),
    )
    class Stream(TypedDict):
        id: str

    @data_source(keys="id", production_config=RestConfig("http://x/{key:id}", headers={"A": "b"}))
    class Lookup(TypedDict):
        id: str

    s = Stream.raptor.definition  # type: ignore[attr-defined]
    assert s.kind == "streaming"
    assert s.config_value("kind") == "kafka"
    assert s.config_value("brokers") == "k1:9092,k2:9092"
    r = Lookup.raptor.definition  # type: ignore[attr-defined]
    assert (r.kind, r.config_value("url"), r.config_value("method")) == (
        "rest",
        "http://x/{key:id}",
        "GET",
    )
    assert PushConfig().data_source_kind == "push"


def test_feature_records_a_definition_and_stays_callable(reg: Registry) -> None:
    src = _source()

    @feature(keys="customer_id", data_source=src)
    @aggregation(function=[AggregationFunction.Sum, "COUNT", "mean"], over="10h", granularity="1h")
    def total_spend(this_row: dict, ctx: Context) -> float:
        """Spend in the last 10 hours."""
        return this_row["amount"]

    assert isinstance(total_spend, Feature)
    assert total_spend({"amount": 2.5}, None) == 2.5
    assert total_spend.__name__ == "total_spend"
    d = total_spend.definition
    assert d.fqn == "default.total_spend"
    assert d.name == "total-spend"
    assert d.aggr == (AggrFn.SUM, AggrFn.COUNT, AggrFn.AVG)
    assert (d.freshness, d.staleness) == (HOUR, 10 * HOUR)
    assert d.data_source == "default.bank_transaction"
    assert resolve(to_manifest(d)) == d
    assert "sum/count/avg over 10h every 1h" in repr(total_spend)
    assert total_spend.columns() == [
        "default.total_spend+sum",
        "default.total_spend+count",
        "default.total_spend+avg",
    ]


def test_exported_code_is_the_function_source_without_decorators(reg: Registry) -> None:
    src = _source()

    @feature(keys="customer_id", data_source=src)
    @freshness(max_age="1m", max_stale=timedelta(hours=1), timeout=2)
    @keep_previous(versions=2, over="1d")
    @labels({"team": "risk"})
    def merchant(row, ctx) -> str:
        # the merchant of the latest transaction
        return row["merchant"]

    code = merchant.definition.code
    assert code.startswith("def merchant(row, ctx) -> str:\n")
    assert "# the merchant of the latest transaction" in code
    assert "@" not in code
    d = merchant.definition
    assert (d.freshness, d.staleness, d.timeout) == (MINUTE, HOUR, 2_000_000)
    assert d.keep_previous is not None
    assert d.keep_previous.over == 24 * HOUR
    assert dict(d.labels) == {"team": "risk"}
    assert merchant.columns()[1:] == ["default.merchant@-1", "default.merchant@-2"]


def test_namespace_and_runtime_reach_the_manifest(reg: Registry) -> None:
    @feature(keys="id")
    @namespace("fraud-team")
    @runtime(packages=["numpy>=1.2"], env_name="science")
    @freshness(max_age="10s")
    def ratio(row, ctx) -> float:
        import numpy

        return float(numpy.float64(1.0))

    d = ratio.definition
    assert d.fqn == "fraud_team.ratio"
    assert d.runtime == "science"
    assert d.packages == ("numpy>=1.2",)
    assert to_manifest(d)["metadata"]["namespace"] == "fraud-team"


def test_definitions_build_a_valid_catalog(reg: Registry) -> None:
    src = _source()

    @feature(data_source=src)
    @aggregation("sum", "1h", "10m")
    def spend(row, ctx) -> float:
        return row["amount"]

    @feature(keys="customer_id")
    @freshness("1m", "1h")
    def big(row, ctx) -> bool:
        total, _ = ctx.get_feature("spend+sum")
        return total is not None and total > 10

    catalog = build_catalog(reg.definitions())
    assert not catalog.errors
    assert catalog.features["default.big"].kind == "sourceless"
    assert catalog.features["default.spend"].kind == "push"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        ("aggr_on_string", "needs an int or float return type"),
        ("missing_freshness", "@freshness"),
        ("unknown_selector", "is not defined"),
        ("fn_not_configured", r"has no \+max"),
        ("bad_selector", "combines"),
        ("module_global", "RATE"),
        ("datetime_class", "datetime"),
        ("no_annotation", "return annotation"),
        ("three_params", "exactly two parameters"),
        ("key_not_a_field", "'nope' is not a field"),
        ("freshness_above_feature", "put @feature"),
        ("reads_in_ingestion", "cannot read other features"),
        ("self_reference", "reads itself"),
        ("blocked_import", "import of 'os' is not allowed"),
        ("conflicting_freshness", "conflicts with @aggregation"),
        ("keep_with_aggr", "cannot be combined"),
    ],
)
def test_bad_definitions_fail_at_decoration_time(reg: Registry, build: str, message: str) -> None:
    src = _source()

    @feature(data_source=src)
    @aggregation(["sum", "count"], "1h", "1m")
    def spend(row, ctx) -> float:
        return row["amount"]

    with pytest.raises(DefinitionError, match=message) as info:
        BAD[build](src)
    assert "test_sdk_decorators.py" in str(info.value)
    assert isinstance(info.value, ManifestError)


RATE = 1.1


def _aggr_on_string(src: type) -> None:
    @feature(data_source=src)
    @aggregation("sum", "1h", "1m")
    def m(row, ctx) -> str:
        return row["merchant"]


def _missing_freshness(src: type) -> None:
    @feature(data_source=src)
    def m(row, ctx) -> str:
        return row["merchant"]


def _unknown_selector(src: type) -> None:
    @feature(keys="customer_id")
    @freshness("1m")
    def d(row, ctx) -> float:
        return ctx.get_feature("nothing_here")[0]


def _fn_not_configured(src: type) -> None:
    @feature(keys="customer_id")
    @freshness("1m")
    def d(row, ctx) -> float:
        return ctx.get_feature("spend+max")[0]


def _bad_selector(src: type) -> None:
    @feature(keys="customer_id")
    @freshness("1m")
    def d(row, ctx) -> float:
        return ctx.get_feature("spend+sum@-1")[0]


def _module_global(src: type) -> None:
    @feature(data_source=src)
    @freshness("1m")
    def d(row, ctx) -> float:
        return row["amount"] * RATE


def _datetime_class(src: type) -> None:
    from datetime import datetime  # the class, while programs see the module

    @feature(data_source=src)
    @freshness("1m")
    def d(row, ctx) -> int:
        return datetime.now().hour


def _no_annotation(src: type) -> None:
    @feature(data_source=src)
    @freshness("1m")
    def d(row, ctx):  # type: ignore[no-untyped-def]
        return 1


def _three_params(src: type) -> None:
    @feature(data_source=src)
    @freshness("1m")
    def d(row, ctx, extra) -> int:  # type: ignore[no-untyped-def]
        return 1


def _key_not_a_field(src: type) -> None:
    @feature(keys="nope", data_source=src)
    @freshness("1m")
    def d(row, ctx) -> int:
        return 1


def _freshness_above_feature(src: type) -> None:
    @freshness("1m")
    @feature(data_source=src)
    @freshness("1m")
    def d(row, ctx) -> int:
        return 1


def _reads_in_ingestion(src: type) -> None:
    @feature(data_source=src)
    @freshness("1m")
    def d(row, ctx) -> float:
        return ctx.get_feature("spend+sum")[0]


def _self_reference(src: type) -> None:
    @feature(keys="customer_id")
    @freshness("1m")
    def d(row, ctx) -> float:
        return ctx.get_feature("d")[0]


def _blocked_import(src: type) -> None:
    @feature(data_source=src)
    @freshness("1m")
    def d(row, ctx) -> int:
        import os

        return os.getpid()


def _conflicting_freshness(src: type) -> None:
    @feature(data_source=src)
    @aggregation("sum", "1h", "1m")
    @freshness("5m")
    def d(row, ctx) -> float:
        return row["amount"]


def _keep_with_aggr(src: type) -> None:
    @feature(data_source=src)
    @aggregation("sum", "1h", "1m")
    @keep_previous(1, "1h")
    def d(row, ctx) -> float:
        return row["amount"]


BAD = {
    "aggr_on_string": _aggr_on_string,
    "missing_freshness": _missing_freshness,
    "unknown_selector": _unknown_selector,
    "fn_not_configured": _fn_not_configured,
    "bad_selector": _bad_selector,
    "module_global": _module_global,
    "datetime_class": _datetime_class,
    "no_annotation": _no_annotation,
    "three_params": _three_params,
    "key_not_a_field": _key_not_a_field,
    "freshness_above_feature": _freshness_above_feature,
    "reads_in_ingestion": _reads_in_ingestion,
    "self_reference": _self_reference,
    "blocked_import": _blocked_import,
    "conflicting_freshness": _conflicting_freshness,
    "keep_with_aggr": _keep_with_aggr,
}


def test_count_works_on_strings(reg: Registry) -> None:
    src = _source()

    @feature(data_source=src)
    @aggregation(AggregationFunction.COUNT, "1h", "1m")
    def visits(row, ctx) -> str:
        return row["merchant"]

    assert visits.definition.aggr == (AggrFn.COUNT,)


def test_option_errors_are_raised_by_the_option_decorator() -> None:
    with pytest.raises(DefinitionError, match="unknown aggregation"):
        aggregation("median", "1h", "1m")
    with pytest.raises(DefinitionError, match="shorter than granularity"):
        aggregation("sum", "1m", "1h")
    with pytest.raises(DefinitionError, match="versions must be 1 or more"):
        keep_previous(0, "1h")
    with pytest.raises(DefinitionError, match="invalid duration"):
        freshness("soon")


def test_redefining_a_feature_replaces_it(reg: Registry) -> None:
    src = _source()
    for factor in (1, 2):

        @feature(data_source=src)
        @freshness("1m")
        def amount(row, ctx) -> float:
            return row["amount"]

        assert reg.features["default.amount"] is amount
        del factor
    assert len(reg.features) == 1


def test_a_cycle_made_by_redefinition_is_rejected(reg: Registry) -> None:
    @feature(keys="k")
    @freshness("1m")
    def a(row, ctx) -> int:
        return 1

    @feature(keys="k")
    @freshness("1m")
    def b(row, ctx) -> int:
        return ctx.get_feature("a")[0] or 0

    with pytest.raises(DefinitionError, match="dependency cycle"):

        @feature(keys="k")
        @freshness("1m")
        def a(row, ctx) -> int:
            return ctx.get_feature("b")[0] or 0

    assert "b" not in reg.features["default.a"].definition.code


def test_model_checks_its_trainer_and_selectors(reg: Registry) -> None:
    src = _source()

    @feature(data_source=src)
    @aggregation(["sum", "count"], "1h", "1m")
    def spend(row, ctx) -> float:
        return row["amount"]

    with pytest.raises(DefinitionError, match="exactly one parameter"):

        @model(keys="customer_id", input_features=["spend+sum"], input_labels=[])
        @freshness("1h")
        def m1(ctx, other):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(DefinitionError, match="not TrainingContext"):

        @model(keys="customer_id", input_features=["spend+sum"], input_labels=[])
        @freshness("1h")
        def m2(ctx: int):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(DefinitionError, match="several aggregations; name one"):

        @model(keys="customer_id", input_features=[spend], input_labels=[])
        @freshness("1h")
        def m3(ctx: TrainingContext):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(DefinitionError, match="names no defined feature"):

        @model(keys="customer_id", input_features=["nothing"], input_labels=[])
        @freshness("1h")
        def m4(ctx: TrainingContext):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(DefinitionError, match="@freshness"):

        @model(keys="customer_id", input_features=["spend+sum"], input_labels=[])
        def m5(ctx: TrainingContext):  # type: ignore[no-untyped-def]
            return None

    @model(keys="customer_id", input_features=["spend+sum", "spend+count"], input_labels=[])
    @freshness("1h", "2h")
    def ok(ctx: TrainingContext):  # type: ignore[no-untyped-def]
        return None

    d = ok.definition
    assert [str(s) for s in d.features] == ["default.spend+sum", "default.spend+count"]
    assert str(d.key_feature) == "default.spend+sum"
    assert d.model_framework == "sklearn"
    assert "sklearn" in repr(ok)
    assert math.isclose(d.staleness / d.freshness, 2)
