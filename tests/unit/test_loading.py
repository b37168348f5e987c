"""raptor.api.loading: multi-document YAML, skipping foreign documents, collecting errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from raptor.api.assets import FeatureDef, Origin
from raptor.api.loading import LoadResult, load_paths, load_text

FEATURE = """\
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata:
  name: {name}
spec:
  primitive: int
  freshness: 1m
  keys: [user]
  builder:
    code: |
      def handler(row, ctx) -> int:
          return 1
"""

KUSTOMIZATION = """\
resources:
  - feature.yaml
"""


def test_multi_document_text_loads_each_document_with_its_origin() -> None:
    text = FEATURE.format(name="a") + "---\n" + FEATURE.format(name="b")
    result = load_text(text, "f.yaml")
    assert result.ok
    assert [a.fqn for a in result.assets] == ["default.a", "default.b"]
    assert [a.origin for a in result.assets] == [Origin("f.yaml", 0), Origin("f.yaml", 1)]


def test_empty_documents_are_skipped_but_counted() -> None:
    text = "---\n# only a comment\n---\n" + FEATURE.format(name="a") + "---\n"
    result = load_text(text, "f.yaml")
    assert result.ok
    assert len(result.assets) == 1
    assert result.assets[0].origin.index == 1
    assert result.notices == ()


def test_kustomization_and_foreign_kinds_are_skipped_with_a_notice() -> None:
    text = KUSTOMIZATION + "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
    result = load_text(text, "kustomization.yaml")
    assert result.ok
    assert result.assets == ()
    assert len(result.notices) == 2
    assert "kustomization.yaml, document 0" in result.notices[0]
    assert "ConfigMap" in result.notices[1]


def test_raptor_kind_without_api_version_is_an_error_not_a_notice() -> None:
    text = FEATURE.format(name="a").replace("apiVersion: k8s.raptor.ml/v1alpha1\n", "")
    result = load_text(text, "f.yaml")
    assert not result.ok
    assert result.errors[0].field == "apiVersion"


def test_other_version_of_the_raptor_group_is_an_error() -> None:
    text = FEATURE.format(name="a").replace("v1alpha1", "v2")
    result = load_text(text)
    assert [e.field for e in result.errors] == ["apiVersion"]


def test_yaml_syntax_error_reports_file_and_line_and_others_still_load() -> None:
    text = FEATURE.format(name="a") + "---\nspec: [1, 2\n---\n" + FEATURE.format(name="b")
    result = load_text(text, "bad.yaml")
    assert [a.fqn for a in result.assets] == ["default.a", "default.b"]
    assert len(result.errors) == 1
    err = result.errors[0]
    assert (err.file, err.index) == ("bad.yaml", 1)
    assert "YAML syntax error at line" in str(err)
    assert "line 14" in str(err)  # the flow sequence opens on line 14


def test_syntax_error_line_is_exact_for_a_single_document() -> None:
    result = load_text("a: 1\nb: c: d\n", "x.yaml")
    assert "at line 2, column 5" in str(result.errors[0])


def test_non_mapping_document_is_an_error() -> None:
    result = load_text("- a\n- b\n", "list.yaml")
    assert not result.ok
    assert "mapping" in result.errors[0].message
    assert result.errors[0].index == 0


def test_a_bad_document_does_not_prevent_the_others() -> None:
    bad = FEATURE.format(name="bad").replace("freshness: 1m", "freshness: soon")
    text = bad + "---\n" + FEATURE.format(name="good")
    result = load_text(text, "f.yaml")
    assert [a.fqn for a in result.assets] == ["default.good"]
    assert [(e.index, e.field) for e in result.errors] == [(0, "spec.freshness")]


def test_duplicate_resources_are_an_error_naming_both_origins(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(FEATURE.format(name="dup"))
    (tmp_path / "b.yaml").write_text(FEATURE.format(name="dup"))
    result = load_paths([tmp_path])
    assert len(result.assets) == 1
    assert result.assets[0].origin.file == str(tmp_path / "a.yaml")
    (err,) = result.errors
    assert err.file == str(tmp_path / "b.yaml")
    assert str(tmp_path / "a.yaml") in err.message
    assert "Feature default.dup" in err.message


def test_same_name_with_different_kinds_is_not_a_duplicate() -> None:
    ds = "apiVersion: k8s.raptor.ml/v1alpha1\nkind: DataSource\nmetadata: {name: x}\n"
    ds += "spec: {kind: push}\n"
    result = load_text(FEATURE.format(name="x") + "---\n" + ds)
    assert result.ok
    assert len(result.assets) == 2


def test_load_paths_walks_folders_sorted_and_skips_hidden(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / ".git").mkdir()
    (tmp_path / "z.yml").write_text(FEATURE.format(name="z"))
    (tmp_path / "sub" / "b.yaml").write_text(FEATURE.format(name="b"))
    (tmp_path / "a.yaml").write_text(FEATURE.format(name="a"))
    (tmp_path / "notes.txt").write_text("not yaml: [")
    (tmp_path / ".git" / "x.yaml").write_text("{{{")
    result = load_paths([tmp_path])
    assert result.ok
    assert [a.name for a in result.assets] == ["a", "b", "z"]


def test_load_paths_reads_a_path_given_twice_once(tmp_path: Path) -> None:
    f = tmp_path / "a.yaml"
    f.write_text(FEATURE.format(name="a"))
    result = load_paths([tmp_path, f])
    assert result.ok
    assert len(result.assets) == 1


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    result = load_paths([tmp_path / "nope.yaml"])
    assert not result.ok
    assert result.errors[0].file == str(tmp_path / "nope.yaml")


def test_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_bytes(b"\xff\xfe\x00bad")
    result = load_paths([tmp_path])
    assert not result.ok
    assert "UTF-8" in result.errors[0].message


def test_warnings_are_collected_with_their_location() -> None:
    text = (
        "apiVersion: k8s.raptor.ml/v1alpha1\nkind: Model\nmetadata: {name: m}\n"
        "spec: {freshness: 1m, features: [a], modelServer: sagemaker-ack}\n"
    )
    result = load_text(text, "m.yaml")
    assert result.ok
    (warning,) = result.warnings
    assert warning.startswith("m.yaml, document 0: Model default/m: modelServer 'sagemaker-ack'")


def test_load_result_is_frozen() -> None:
    result = LoadResult()
    assert result.ok
    with pytest.raises(AttributeError):
        result.assets = ()  # type: ignore[misc]


def test_loaded_definitions_are_resolved_features() -> None:
    (feature,) = load_text(FEATURE.format(name="hello-world")).assets
    assert isinstance(feature, FeatureDef)
    assert feature.keys == ("user",)
