"""The hand-encoded ``BatchGetResponse`` parses back, with the generated classes, into exactly
the reply built message by message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raptor.api.names import parse_selector
from raptor.api.proto.core.v1alpha1 import api_pb2, types_pb2
from raptor.api.timeutil import EPOCH
from raptor.engine.batch import BatchColumn
from raptor.errors import InvalidArgument, NotFound, RaptorError
from raptor.server.errors import grpc_status_for
from raptor.server.grpc_messages import timestamp_to_proto, value_to_proto
from raptor.server.grpc_wire import (
    datetime_micros,
    encode_batch_reply,
    encode_get_reply,
    encode_value,
)

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
TIMES = st.datetimes(
    min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
)
SCALARS = st.one_of(
    st.booleans(),
    INT64,
    st.floats(allow_nan=False),
    st.text(max_size=200),
    TIMES,
)
VALUES = st.one_of(st.none(), SCALARS, st.lists(SCALARS, max_size=4))
MICROS = st.one_of(st.none(), st.integers(min_value=-(2**40), max_value=2**52))
KEYS = st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=150), max_size=3)


def reference_reply(
    uuid: str, selectors: list[str], entities: list[dict[str, str]], columns: list[BatchColumn]
) -> api_pb2.BatchGetResponse:
    """The reply built with the generated classes, one message per level."""
    out = api_pb2.BatchGetResponse(uuid=uuid, selectors=selectors)
    for r, keys in enumerate(entities):
        row = out.rows.add(keys=keys)
        for col in columns:
            if r in col.errors:
                exc = col.errors[r]
                row.cells.add(
                    value=types_pb2.FeatureValue(fqn=col.selector.text, keys=keys, fresh=False),
                    error=api_pb2.CellError(code=grpc_status_for(exc), message=str(exc)),
                )
                continue
            micros = col.timestamps[r]
            stamp = None
            if micros is not None:
                stamp = timestamp_to_proto(EPOCH + timedelta(microseconds=micros))
            row.cells.add(
                value=types_pb2.FeatureValue(
                    fqn=col.selector.text,
                    keys=keys,
                    value=value_to_proto(col.values[r]),
                    timestamp=stamp,
                    fresh=col.fresh[r],
                )
            )
    return out


@st.composite
def batches(draw: st.DrawFn) -> tuple[str, list[str], list[dict[str, str]], list[BatchColumn]]:
    entities = draw(st.lists(KEYS, max_size=6))
    n = len(entities)
    columns = []
    for c in range(draw(st.integers(min_value=1, max_value=4))):
        values = draw(st.lists(VALUES, min_size=n, max_size=n))
        stamps = draw(st.lists(MICROS, min_size=n, max_size=n))
        fresh = draw(st.lists(st.booleans(), min_size=n, max_size=n))
        failed = draw(st.sets(st.integers(min_value=0, max_value=max(n - 1, 0)), max_size=n))
        errors: dict[int, RaptorError] = {
            r: (InvalidArgument if r % 2 else NotFound)(f"row {r}: missing key é")
            for r in failed
            if r < n
        }
        sel = parse_selector(f"f{c}+sum")
        columns.append(BatchColumn(sel, sel.fqn, values, stamps, fresh, errors))
    uuid = draw(st.one_of(st.just(""), st.uuids().map(str)))
    return uuid, [col.selector.text for col in columns], entities, columns


@settings(max_examples=300, deadline=None)
@given(batches())
def test_encoded_reply_parses_into_the_message_built_reply(
    batch: tuple[str, list[str], list[dict[str, str]], list[BatchColumn]],
) -> None:
    uuid, selectors, entities, columns = batch
    encoded = encode_batch_reply(uuid, selectors, entities, columns)
    parsed = api_pb2.BatchGetResponse.FromString(encoded)
    assert parsed == reference_reply(uuid, selectors, entities, columns)


def test_a_large_cell_uses_multi_byte_lengths() -> None:
    text = "x" * 70_000
    sel = parse_selector("name")
    col = BatchColumn(sel, sel.fqn, [text], [1_700_000_000_123_456], [True], {})
    parsed = api_pb2.BatchGetResponse.FromString(
        encode_batch_reply("u", ["default.name"], [{"id": "1"}], [col])
    )
    cell = parsed.rows[0].cells[0].value
    assert cell.value.scalar_value.string_value == text
    assert (cell.timestamp.seconds, cell.timestamp.nanos) == (1_700_000_000, 123_456_000)
    assert cell.fresh


@pytest.mark.parametrize("value", [0, False, 0.0, "", -1, 2**63 - 1])
def test_a_zero_scalar_is_still_set(value: Any) -> None:
    msg = types_pb2.Value.FromString(encode_value(value))
    assert msg.HasField("scalar_value")
    assert msg.scalar_value.WhichOneof("value") is not None


def test_an_unsupported_value_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="Scalar"):
        encode_value(object())


@settings(max_examples=200, deadline=None)
@given(
    uuid=st.one_of(st.just(""), st.uuids().map(str)),
    keys=KEYS,
    value=VALUES,
    micros=MICROS,
    fresh=st.booleans(),
    described=st.booleans(),
)
def test_encoded_get_reply_parses_into_the_message_built_reply(
    uuid: str, keys: dict[str, str], value: Any, micros: int | None, fresh: bool, described: bool
) -> None:
    descriptor = types_pb2.FeatureDescriptor(
        fqn="default.amount", keys=["user"], builder="feature" if described else ""
    )
    encoded = encode_get_reply(
        uuid, "default.amount", keys, value, micros, fresh, descriptor.SerializeToString()
    )
    stamp = None if micros is None else timestamp_to_proto(EPOCH + timedelta(microseconds=micros))
    expected = api_pb2.GetResponse(
        uuid=uuid,
        value=types_pb2.FeatureValue(
            fqn="default.amount",
            keys=keys,
            value=value_to_proto(value),
            timestamp=stamp,
            fresh=fresh,
        ),
        feature_descriptor=descriptor,
    )
    assert api_pb2.GetResponse.FromString(encoded) == expected


@given(TIMES)
def test_datetime_micros_matches_the_timestamp_conversion(when: datetime) -> None:
    ts = timestamp_to_proto(when)
    assert datetime_micros(when) == ts.seconds * 1_000_000 + ts.nanos // 1000
