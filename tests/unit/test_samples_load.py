"""Every upstream sample manifest (raptor-ml/raptor v0.3.3 config/samples) loads."""

from __future__ import annotations

import pytest

from raptor.api.assets import FeatureDef, ModelDef
from raptor.api.loading import LoadResult, load_paths
from raptor.api.timeutil import MINUTE, SECOND
from raptor.api.windows import AggrFn, WindowSpec
from samples import SKIP_REASON, find_samples

SAMPLES = find_samples()
pytestmark = pytest.mark.skipif(SAMPLES is None, reason=SKIP_REASON)


@pytest.fixture(scope="module")
def loaded() -> LoadResult:
    assert SAMPLES is not None
    return load_paths([SAMPLES])


def by_name(result: LoadResult, name: str) -> FeatureDef:
    (asset,) = [a for a in result.assets if a.name == name and isinstance(a, FeatureDef)]
    assert isinstance(asset, FeatureDef)
    return asset


@pytest.mark.parametrize(
    "name",
    sorted(p.name for p in SAMPLES.iterdir()) if SAMPLES is not None else [],
)
def test_every_sample_file_loads_without_errors(name: str) -> None:
    assert SAMPLES is not None
    result = load_paths([SAMPLES / name])
    assert result.errors == ()


def test_samples_folder_loads_every_resource(loaded: LoadResult) -> None:
    assert loaded.ok, [str(e) for e in loaded.errors]
    kinds = sorted(type(a).__name__ for a in loaded.assets)
    assert kinds.count("FeatureDef") == 14
    assert kinds.count("DataSourceDef") == 2
    assert kinds.count("ModelDef") == 1
    assert any("kustomization.yaml" in n for n in loaded.notices)


def test_basic_model_yields_the_sagemaker_warning(loaded: LoadResult) -> None:
    (model,) = [a for a in loaded.assets if isinstance(a, ModelDef)]
    assert model.model_server == "sagemaker-ack"
    assert model.model_framework_version == "1.0-1"
    assert [str(s) for s in model.features] == ["default.hello_world", "default.simple_aggr"]
    (warning,) = loaded.warnings
    assert "Model default/model-basic: modelServer 'sagemaker-ack' is not available" in warning


def test_simple_aggr_gets_its_window_and_all_five_functions(loaded: LoadResult) -> None:
    f = by_name(loaded, "simple-aggr")
    assert f.window == WindowSpec(10 * SECOND, MINUTE)
    assert set(f.aggr) == set(AggrFn)
    assert len(f.aggr) == 5


def test_clicks_granularity_is_its_freshness(loaded: LoadResult) -> None:
    f = by_name(loaded, "clicks")
    assert f.window is not None
    assert f.window.granularity == f.freshness == 10 * SECOND
    assert f.data_source == "default.clicks"
    assert f.aggr == (AggrFn.SUM, AggrFn.COUNT)


def test_rest_data_source_keeps_its_null_config_value(loaded: LoadResult) -> None:
    (src,) = [a for a in loaded.assets if a.fqn == "default.json_placeholder"]
    assert src.config_value("method") == "GET"  # type: ignore[union-attr]
    assert src.config_value("body", "absent") is None  # type: ignore[union-attr]
