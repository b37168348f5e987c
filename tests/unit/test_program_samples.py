"""Every feature program of upstream RaptorML's samples compiles and runs (compat/README.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from raptor.api.names import fqn_of
from raptor.api.primitives import Primitive
from raptor.engine.programs import Context, Program, ProgramResult, compile_program
from raptor.errors import ProgramRuntimeError
from samples import SKIP_REASON, find_samples

SAMPLES = find_samples() or Path("/nonexistent")
pytestmark = pytest.mark.skipif(not SAMPLES.is_dir(), reason=SKIP_REASON)
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
KEYS = {"name": "x", "client_id": "a:b", "user_id": "1"}
ROW = {"address": {"city": "Gwenborough"}, "address.city": "Gwenborough"}
FAILS_UPSTREAM = {"default.primitive_array_timestamps"}  # `now + 1`: datetime + int


def _features() -> list[dict[str, Any]]:
    found = []
    for path in sorted(SAMPLES.glob("*.y*ml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "Feature":
                found.append(doc)
    return found


FEATURES = _features()


def _compile(doc: dict[str, Any]) -> Program:
    meta, spec = doc["metadata"], doc["spec"]
    return compile_program(
        spec["builder"]["code"],
        fqn=fqn_of(meta.get("namespace"), meta["name"]),
        namespace=meta.get("namespace") or "default",
        primitive=Primitive.parse(spec["primitive"]),
        keys=spec["keys"],
    )


def _run(doc: dict[str, Any]) -> ProgramResult:
    program = _compile(doc)
    return program.run(ROW, Context(program.fqn, program.namespace, dict(KEYS), NOW))


def test_the_samples_hold_fourteen_feature_programs() -> None:
    assert len(FEATURES) == 14


@pytest.mark.parametrize(
    "doc",
    [
        d
        for d in FEATURES
        if fqn_of(d["metadata"].get("namespace"), d["metadata"]["name"]) not in FAILS_UPSTREAM
    ],
    ids=lambda d: d["metadata"]["name"],
)
def test_sample_program_compiles_and_runs(doc: dict[str, Any]) -> None:
    result = _run(doc)
    primitive = Primitive.parse(doc["spec"]["primitive"])
    assert result.value is not None
    assert primitive.check(result.value) == result.value


def test_primitive_samples_return_their_constants() -> None:
    by_name = {d["metadata"]["name"]: d for d in FEATURES}
    assert _run(by_name["hello-world"]).value == "Hello world x"
    assert _run(by_name["primitive-array-strings"]).value == ["a", "b", "c"]
    assert _run(by_name["primitive-array-floats"]).value == [1.4, 2.0, 3.2]
    assert _run(by_name["user-city"]).value == "Gwenborough"
    stamp = _run(by_name["primitive-timestamp"]).value
    assert isinstance(stamp, datetime)
    assert stamp.tzinfo is UTC


def test_clicks_sample_returns_value_timestamp_key_in_the_upstream_order() -> None:
    clicks = next(d for d in FEATURES if d["metadata"]["name"] == "clicks")
    assert _run(clicks) == ProgramResult(1, {"client_id": "b"}, NOW)


def test_array_timestamps_sample_fails_when_run_naming_feature_and_type_error() -> None:
    doc = next(d for d in FEATURES if d["metadata"]["name"] == "primitive-array-timestamps")
    program = _compile(doc)  # loads: the defect only shows when it runs
    with pytest.raises(ProgramRuntimeError) as info:
        program.run(ROW, Context(program.fqn, program.namespace, dict(KEYS), NOW))
    message = str(info.value)
    assert message.startswith(
        "feature default.primitive_array_timestamps: program raised TypeError"
    )
    assert "'datetime.datetime' and 'int'" in message
    assert message.endswith("(line 4)")
    assert isinstance(info.value.__cause__, TypeError)
