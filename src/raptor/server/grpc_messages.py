"""Conversions between the ``core.v1alpha1`` protobuf messages and engine values. Pure.

The gRPC accessor (:mod:`raptor.server.grpc`) only translates; this module is that
translation, kept apart so it can be tested without a server and without importing ``grpc``
(it needs only the generated message classes).

Values travel as ``Value`` = ``Scalar | List``; a ``Scalar`` is one of ``string_value``,
``int_value`` (64-bit here, int32 in upstream's proto: same varint wire type),
``float_value`` (double), ``bool_value`` and ``timestamp_value``. Python values map by type
(``bool`` before ``int``). Incoming values are *not* type-checked here: the engine checks them
against the feature's primitive (:meth:`raptor.api.primitives.Primitive.check`), so gRPC and
REST reject exactly the same things. A malformed message — a ``Value``/``Scalar`` whose oneof
is empty, a timestamp out of range — raises :class:`raptor.errors.InvalidArgument` naming the
field.

>>> scalar_from_proto(scalar_to_proto(2**40))
1099511627776
>>> value_from_proto(value_to_proto([True, False]))
[True, False]
>>> value_to_proto(None) is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from raptor.api.primitives import Primitive
from raptor.api.proto.core.v1alpha1 import types_pb2
from raptor.api.timeutil import EPOCH, SECOND
from raptor.api.windows import AggrFn
from raptor.engine.catalog import AssetStatus, FeatureRuntime, ModelRuntime
from raptor.engine.pipeline import FeatureValue
from raptor.errors import InvalidArgument

__all__ = [
    "descriptor_to_proto",
    "duration_to_proto",
    "feature_value_to_proto",
    "scalar_from_proto",
    "scalar_to_proto",
    "timestamp_from_proto",
    "timestamp_to_proto",
    "value_from_proto",
    "value_to_proto",
]

_PRIMITIVES: Mapping[Primitive, types_pb2.Primitive] = {
    Primitive.STRING: types_pb2.PRIMITIVE_STRING,
    Primitive.INT: types_pb2.PRIMITIVE_INTEGER,
    Primitive.FLOAT: types_pb2.PRIMITIVE_FLOAT,
    Primitive.BOOL: types_pb2.PRIMITIVE_BOOL,
    Primitive.TIMESTAMP: types_pb2.PRIMITIVE_TIMESTAMP,
    Primitive.STRING_LIST: types_pb2.PRIMITIVE_STRING_LIST,
    Primitive.INT_LIST: types_pb2.PRIMITIVE_INTEGER_LIST,
    Primitive.FLOAT_LIST: types_pb2.PRIMITIVE_FLOAT_LIST,
    Primitive.BOOL_LIST: types_pb2.PRIMITIVE_BOOL_LIST,
    Primitive.TIMESTAMP_LIST: types_pb2.PRIMITIVE_TIMESTAMP_LIST,
}

_AGGR_FNS: Mapping[AggrFn, types_pb2.AggrFn] = {
    AggrFn.SUM: types_pb2.AGGR_FN_SUM,
    AggrFn.AVG: types_pb2.AGGR_FN_AVG,
    AggrFn.MAX: types_pb2.AGGR_FN_MAX,
    AggrFn.MIN: types_pb2.AGGR_FN_MIN,
    AggrFn.COUNT: types_pb2.AGGR_FN_COUNT,
}

_MICROS_PER_SECOND = SECOND


# -- time --------------------------------------------------------------------------------


def timestamp_to_proto(dt: datetime) -> Timestamp:
    """An aware (or naive = UTC) datetime as a ``google.protobuf.Timestamp``."""
    d = (dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)) - EPOCH
    return Timestamp(seconds=d.days * 86400 + d.seconds, nanos=d.microseconds * 1000)


def timestamp_from_proto(ts: Timestamp, field: str = "timestamp") -> datetime:
    """A ``Timestamp`` as an aware UTC datetime (nanoseconds truncated to microseconds)."""
    try:
        dt: datetime = ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError) as exc:
        raise InvalidArgument(f"{field}: invalid timestamp: {exc}") from None
    return dt


def duration_to_proto(micros: int) -> Duration:
    return Duration(
        seconds=micros // _MICROS_PER_SECOND, nanos=(micros % _MICROS_PER_SECOND) * 1000
    )


# -- values ------------------------------------------------------------------------------


def scalar_to_proto(x: Any) -> types_pb2.Scalar:
    """One Python scalar as a ``Scalar`` (by type; ``bool`` before ``int``)."""
    if isinstance(x, bool):
        return types_pb2.Scalar(bool_value=x)
    if isinstance(x, int):
        return types_pb2.Scalar(int_value=x)
    if isinstance(x, float):
        return types_pb2.Scalar(float_value=x)
    if isinstance(x, str):
        return types_pb2.Scalar(string_value=x)
    if isinstance(x, datetime):
        return types_pb2.Scalar(timestamp_value=timestamp_to_proto(x))
    raise TypeError(f"cannot send a {type(x).__name__} as a Scalar: {x!r}")


def value_to_proto(value: Any) -> types_pb2.Value | None:
    """A feature value as a ``Value``; ``None`` (no value) stays ``None`` (field left unset)."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return types_pb2.Value(
            list_value=types_pb2.List(values=[scalar_to_proto(x) for x in value])
        )
    return types_pb2.Value(scalar_value=scalar_to_proto(value))


def scalar_from_proto(msg: types_pb2.Scalar, field: str = "value") -> Any:
    """The Python value of a ``Scalar``; an empty oneof is an :class:`InvalidArgument`."""
    kind = msg.WhichOneof("value")
    if kind == "int_value":
        return msg.int_value
    if kind == "float_value":
        return msg.float_value
    if kind == "string_value":
        return msg.string_value
    if kind == "bool_value":
        return msg.bool_value
    if kind == "timestamp_value":
        return timestamp_from_proto(msg.timestamp_value, f"{field}.timestamp_value")
    raise InvalidArgument(
        f"{field} is empty: set one of string_value, int_value, float_value, bool_value, "
        "timestamp_value"
    )


def value_from_proto(msg: types_pb2.Value, field: str = "value") -> Any:
    """The Python value of a ``Value`` (a scalar or a list); an empty oneof is an error."""
    kind = msg.WhichOneof("value")
    if kind == "scalar_value":
        return scalar_from_proto(msg.scalar_value, f"{field}.scalar_value")
    if kind == "list_value":
        return [
            scalar_from_proto(x, f"{field}.list_value.values[{i}]")
            for i, x in enumerate(msg.list_value.values)
        ]
    raise InvalidArgument(f"{field} is empty: set scalar_value or list_value")


def feature_value_to_proto(fv: FeatureValue) -> types_pb2.FeatureValue:
    """An engine read as a ``FeatureValue``: ``fqn`` is the normalized selector, ``fresh``
    is always set, ``value``/``timestamp`` are unset when there is no value."""
    return types_pb2.FeatureValue(
        fqn=fv.selector,
        keys=fv.keys,
        value=value_to_proto(fv.value),
        timestamp=None if fv.timestamp is None else timestamp_to_proto(fv.timestamp),
        fresh=fv.fresh,
    )


# -- descriptors -------------------------------------------------------------------------


def descriptor_to_proto(
    rt: FeatureRuntime | ModelRuntime, status: AssetStatus | None = None
) -> types_pb2.FeatureDescriptor:
    """What is deployed under a name. A model is described as a feature of builder
    ``model`` with no primitive. ``status`` (from the control plane) fills ``ready`` and the
    reason; without it a deployed asset is ready."""
    if isinstance(rt, ModelRuntime):
        m = rt.defn
        msg = types_pb2.FeatureDescriptor(
            fqn=m.fqn,
            primitive=types_pb2.PRIMITIVE_UNSPECIFIED,
            freshness=duration_to_proto(m.freshness),
            staleness=duration_to_proto(m.staleness),
            timeout=duration_to_proto(m.timeout),
            keys=m.keys,
            builder="model",
        )
    else:
        f = rt.defn
        msg = types_pb2.FeatureDescriptor(
            fqn=f.fqn,
            primitive=_PRIMITIVES[f.primitive],
            aggr=[_AGGR_FNS[a] for a in f.aggr],
            freshness=duration_to_proto(f.freshness),
            staleness=duration_to_proto(f.staleness),
            timeout=duration_to_proto(f.timeout),
            keys=f.keys,
            builder=rt.kind,
            data_source=f.data_source or "",
            runtime_env=f.runtime or "",
        )
        if f.keep_previous is not None:
            msg.keep_previous.CopyFrom(
                types_pb2.KeepPrevious(
                    versions=f.keep_previous.versions,
                    over=duration_to_proto(f.keep_previous.over),
                )
            )
    if status is None:
        msg.ready = True
        msg.status_reason = "Ready"
    else:
        msg.ready = status.ready
        msg.status_reason = status.reason
        msg.status_message = status.message
    return msg
