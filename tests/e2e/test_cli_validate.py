"""``raptor validate`` as CI uses it: exit codes and messages, no tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from samples import find_samples

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = find_samples() or Path("/nonexistent")

FEATURE = """\
apiVersion: k8s.raptor.ml/v1alpha1
kind: Feature
metadata:
  name: {name}
spec:
  primitive: {primitive}
  freshness: {freshness}
  staleness: 1h
  keys: [id]
  builder:
{builder}
"""


def feature(
    name: str = "f",
    primitive: str = "int",
    freshness: str = "1m",
    code: str = "def handler(row, ctx) -> int:\n    return 1",
    extra: str = "",
) -> str:
    body = "    code: |\n" + "".join(f"      {line}\n" for line in code.splitlines())
    return FEATURE.format(name=name, primitive=primitive, freshness=freshness, builder=extra + body)


def validate(*paths: Path | str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "raptor", "validate", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_examples_and_upstream_samples_validate() -> None:
    paths = [ROOT / "examples"] + ([SAMPLES] if SAMPLES.is_dir() else [])
    res = validate(*paths)
    assert res.returncode == 0, res.stderr
    assert "OK" in res.stdout
    if SAMPLES.is_dir():
        assert "sagemaker-ack" in res.stderr  # a warning, not an error


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    res = validate(tmp_path / "nope")
    assert res.returncode == 2
    assert "no such file" in res.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            feature().replace("  keys: [id]", "  keys: [id]\n  colour: red"),
            "colour",
            id="unknown-field",
        ),
        pytest.param(feature(freshness="ten minutes"), "freshness", id="bad-duration"),
        pytest.param(
            feature(code="def handler(row, ctx) -> str:\n    return 'x'"),
            "int",
            id="annotation-mismatch",
        ),
        pytest.param(
            feature(
                primitive="string",
                code="def handler(row, ctx) -> str:\n    return 'x'",
                extra="    aggr: [sum]\n",
            ),
            "sum",
            id="aggregation-on-string",
        ),
        pytest.param(feature().replace("  keys: [id]\n", ""), "keys", id="missing-keys"),
        pytest.param(
            feature("a", code="def handler(row, ctx) -> int:\n    return ctx.get_feature('b')[0]")
            + "---\n"
            + feature(
                "b", code="def handler(row, ctx) -> int:\n    return ctx.get_feature('a')[0]"
            ),
            "cycle",
            id="dependency-cycle",
        ),
        pytest.param(
            feature(
                "g", code="def handler(row, ctx) -> int:\n    return ctx.get_feature('w+sum@-1')[0]"
            ),
            "@-1",
            id="fn-with-version",
        ),
        pytest.param(
            feature("churn")
            + "---\n"
            + "apiVersion: k8s.raptor.ml/v1alpha1\nkind: Model\nmetadata:\n  name: churn\n"
            + "spec:\n  freshness: 1m\n  staleness: 1h\n  features: [other]\n  keys: [id]\n",
            "share the name",
            id="feature-model-same-name",
        ),
        pytest.param("kind: Feature\napiVersion: k8s.raptor.ml/v1alpha1\n: :\n", "line", id="yaml"),
    ],
)
def test_bad_manifests_fail_with_a_precise_error(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    res = validate(path)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr
    assert "error:" in res.stderr
    assert expected in res.stderr
    assert "bad.yaml" in res.stderr
