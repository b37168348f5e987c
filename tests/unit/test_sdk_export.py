"""Export: manifests, artifacts, kustomization and Makefile that `raptor validate` accepts."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import TypedDict

import pandas as pd
import pytest
import yaml

from raptor import TrainingContext, aggregation, data_source, feature, freshness, manifests, model
from raptor.api.loading import load_paths
from raptor.cli.export import run_export
from raptor.cli.validate import validate_paths
from raptor.sdk.artifacts import load_artifact
from raptor.sdk.registry import Registry

FRAME = pd.DataFrame(
    {
        "user": ["a", "b", "a", "b"],
        "ts": pd.to_datetime(
            [
                "2024-01-01T00:00:00Z",
                "2024-01-01T00:01:00Z",
                "2024-01-01T00:02:00Z",
                "2024-01-01T00:03:00Z",
            ]
        ),
        "amount": [1.0, 5.0, 2.0, 7.0],
        "fraud": [0, 1, 0, 1],
    }
)


@pytest.fixture
def reg() -> Registry:
    with Registry() as r:
        yield r


def _define():  # type: ignore[no-untyped-def]
    @data_source(training_data=FRAME, keys="user", timestamp="ts")
    class Payments(TypedDict):
        user: str
        ts: str
        amount: float
        fraud: int

    @feature(data_source=Payments)
    @aggregation(["sum", "max"], "1h", "1m")
    def spend(row, ctx) -> float:
        return row["amount"]

    @feature(data_source=Payments)
    @freshness("1h", "1d")
    def fraud(row, ctx) -> int:
        return row["fraud"]

    @feature(keys="user")
    @freshness("0s", "1m")
    def risky(row, ctx) -> bool:
        top, _ = ctx.get_feature("spend+max")
        return top is not None and top > 4

    @model(keys="user", input_features=["spend+sum", "risky"], input_labels=["fraud"])
    @freshness("1m", "1h")
    def detector(ctx: TrainingContext):  # type: ignore[no-untyped-def]
        from sklearn.tree import DecisionTreeClassifier

        df = ctx.features_and_labels()
        x = df[ctx.input_features].astype(float)
        return DecisionTreeClassifier(random_state=0).fit(x, df["fraud"])

    return spend, detector


def test_feature_manifest_is_yaml_with_the_code_as_a_block(reg: Registry) -> None:
    spend, _ = _define()
    doc = yaml.safe_load(spend.manifest())
    assert doc["kind"] == "Feature"
    assert doc["spec"]["builder"]["aggr"] == ["sum", "max"]
    assert "code: |" in spend.manifest()


def test_model_export_writes_a_folder_that_validates(reg: Registry, tmp_path: Path) -> None:
    _, detector = _define()
    out = detector.export(tmp_path / "out")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert files == [
        ".raptor-export",
        "Makefile",
        "datasources/payments.yaml",
        "features/fraud.yaml",
        "features/risky.yaml",
        "features/spend.yaml",
        "kustomization.yaml",
        "models/detector.yaml",
        "models/detector/metadata.json",
        "models/detector/model.joblib",
    ]
    errors, _warnings, notices, assets = validate_paths([out])
    assert errors == []
    assert len(assets) == 5
    assert any("kustomization" in n for n in notices)
    kust = yaml.safe_load((out / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(f for f in files if f.endswith(".yaml") and "/" in f)
    assert "$(KUBECTL) apply -k ." in (out / "Makefile").read_text()
    spec = yaml.safe_load((out / "models/detector.yaml").read_text())["spec"]
    assert spec["storageURI"] == (out / "models/detector").resolve().as_uri()
    assert spec["modelFramework"] == "sklearn"
    assert spec["modelFrameworkVersion"]
    trained, meta = load_artifact(out / "models/detector")
    assert meta["features"] == ["default.spend+sum", "default.risky"]
    assert meta["trainingRows"] == 4
    probe = pd.DataFrame({"spend+sum": [7.0], "risky": [1.0]})
    assert list(trained.predict(probe)) == [1]


def test_re_export_removes_stale_manifests(reg: Registry, tmp_path: Path) -> None:
    spend, _ = _define()
    out = tmp_path / "out"
    reg.models.clear()
    (out / "features").mkdir(parents=True)
    (out / ".raptor-export").write_text("features/old.yaml\n")
    (out / "features/old.yaml").write_text("kind: Feature\n")
    spend.export(out)
    assert not (out / "features/old.yaml").exists()
    assert load_paths([out]).ok


def test_manifests_lists_every_asset(reg: Registry, tmp_path: Path) -> None:
    _define()
    text = manifests(tmp_path / "all.yaml")
    kinds = [d["kind"] for d in yaml.safe_load_all(text)]
    assert kinds == ["DataSource", "Feature", "Feature", "Feature", "Model"]
    assert (tmp_path / "all.yaml").read_text() == text


MODULE = """
from typing import TypedDict
import pandas as pd
from raptor import *

@data_source(
    training_data=pd.DataFrame({"id": ["x"], "ts": ["2024-01-01T00:00:00Z"], "v": [1.0]}),
    keys="id",
    timestamp="ts",
    production_config=StreamingConfig(kind="redis", url="redis://r:6379", stream="s"),
)
class Readings(TypedDict):
    id: str
    ts: str
    v: float

@feature(data_source=Readings)
@aggregation("avg", "10m", "1m")
def level(row, ctx) -> float:
    return row["v"]

if __name__ == "__main__":
    raise SystemExit("the main block must not run on export")
"""


def test_raptor_export_command_writes_and_validates(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = tmp_path / "defs.py"
    module.write_text(textwrap.dedent(MODULE))
    assert run_export(str(module), str(tmp_path / "out")) == 0
    assert "1 data source(s), 1 feature(s), 0 model(s)" in capsys.readouterr().out
    errors, *_ = validate_paths([tmp_path / "out"])
    assert errors == []
    ds = yaml.safe_load((tmp_path / "out/datasources/readings.yaml").read_text())
    assert ds["spec"]["kind"] == "streaming"
    assert {"name": "stream", "value": "s"} in ds["spec"]["config"]


def test_raptor_export_reports_bad_definitions(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = tmp_path / "bad.py"
    module.write_text(
        "from raptor import *\n\n@feature(keys='k')\ndef f(row, ctx) -> int:\n    return 1\n"
    )
    assert run_export(str(module), str(tmp_path / "out")) == 1
    assert "@freshness" in capsys.readouterr().err
    assert run_export(str(tmp_path / "missing.py"), str(tmp_path / "out")) == 2


def test_artifact_metadata_is_json(reg: Registry, tmp_path: Path) -> None:
    _, detector = _define()
    art = detector.save(tmp_path / "art")
    meta = json.loads((tmp_path / "art/metadata.json").read_text())
    assert meta["sha256"] == art.metadata["sha256"]
    assert meta["framework"] == "sklearn"
