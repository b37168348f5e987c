import datetime

from raptor.api.proto.core.v1alpha1 import types_pb2 as _types_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GetRequest(_message.Message):
    __slots__ = ("uuid", "selector", "keys")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    UUID_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    selector: str
    keys: _containers.ScalarMap[str, str]
    def __init__(self, uuid: _Optional[str] = ..., selector: _Optional[str] = ..., keys: _Optional[_Mapping[str, str]] = ...) -> None: ...

class GetResponse(_message.Message):
    __slots__ = ("uuid", "value", "feature_descriptor")
    UUID_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    value: _types_pb2.FeatureValue
    feature_descriptor: _types_pb2.FeatureDescriptor
    def __init__(self, uuid: _Optional[str] = ..., value: _Optional[_Union[_types_pb2.FeatureValue, _Mapping]] = ..., feature_descriptor: _Optional[_Union[_types_pb2.FeatureDescriptor, _Mapping]] = ...) -> None: ...

class SetRequest(_message.Message):
    __slots__ = ("uuid", "selector", "keys", "value", "timestamp")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    UUID_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    selector: str
    keys: _containers.ScalarMap[str, str]
    value: _types_pb2.Value
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, uuid: _Optional[str] = ..., selector: _Optional[str] = ..., keys: _Optional[_Mapping[str, str]] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SetResponse(_message.Message):
    __slots__ = ("uuid", "timestamp")
    UUID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, uuid: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AppendRequest(_message.Message):
    __slots__ = ("uuid", "fqn", "keys", "value", "timestamp")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    UUID_FIELD_NUMBER: _ClassVar[int]
    FQN_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    fqn: str
    keys: _containers.ScalarMap[str, str]
    value: _types_pb2.Scalar
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, uuid: _Optional[str] = ..., fqn: _Optional[str] = ..., keys: _Optional[_Mapping[str, str]] = ..., value: _Optional[_Union[_types_pb2.Scalar, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class AppendResponse(_message.Message):
    __slots__ = ("uuid", "timestamp")
    UUID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, uuid: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IncrRequest(_message.Message):
    __slots__ = ("uuid", "fqn", "keys", "value", "timestamp")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    UUID_FIELD_NUMBER: _ClassVar[int]
    FQN_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    fqn: str
    keys: _containers.ScalarMap[str, str]
    value: _types_pb2.Scalar
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, uuid: _Optional[str] = ..., fqn: _Optional[str] = ..., keys: _Optional[_Mapping[str, str]] = ..., value: _Optional[_Union[_types_pb2.Scalar, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class IncrResponse(_message.Message):
    __slots__ = ("uuid", "timestamp")
    UUID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, uuid: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpdateRequest(_message.Message):
    __slots__ = ("uuid", "selector", "keys", "value", "timestamp")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    UUID_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    KEYS_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    selector: str
    keys: _containers.ScalarMap[str, str]
    value: _types_pb2.Value
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, uuid: _Optional[str] = ..., selector: _Optional[str] = ..., keys: _Optional[_Mapping[str, str]] = ..., value: _Optional[_Union[_types_pb2.Value, _Mapping]] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UpdateResponse(_message.Message):
    __slots__ = ("uuid", "timestamp")
    UUID_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    timestamp: _timestamp_pb2.Timestamp
    def __init__(self, uuid: _Optional[str] = ..., timestamp: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class FeatureDescriptorRequest(_message.Message):
    __slots__ = ("uuid", "selector")
    UUID_FIELD_NUMBER: _ClassVar[int]
    SELECTOR_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    selector: str
    def __init__(self, uuid: _Optional[str] = ..., selector: _Optional[str] = ...) -> None: ...

class FeatureDescriptorResponse(_message.Message):
    __slots__ = ("uuid", "feature_descriptor")
    UUID_FIELD_NUMBER: _ClassVar[int]
    FEATURE_DESCRIPTOR_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    feature_descriptor: _types_pb2.FeatureDescriptor
    def __init__(self, uuid: _Optional[str] = ..., feature_descriptor: _Optional[_Union[_types_pb2.FeatureDescriptor, _Mapping]] = ...) -> None: ...

class EntityKeys(_message.Message):
    __slots__ = ("keys",)
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.ScalarMap[str, str]
    def __init__(self, keys: _Optional[_Mapping[str, str]] = ...) -> None: ...

class BatchGetRequest(_message.Message):
    __slots__ = ("uuid", "selectors", "entities")
    UUID_FIELD_NUMBER: _ClassVar[int]
    SELECTORS_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    selectors: _containers.RepeatedScalarFieldContainer[str]
    entities: _containers.RepeatedCompositeFieldContainer[EntityKeys]
    def __init__(self, uuid: _Optional[str] = ..., selectors: _Optional[_Iterable[str]] = ..., entities: _Optional[_Iterable[_Union[EntityKeys, _Mapping]]] = ...) -> None: ...

class CellError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class BatchGetCell(_message.Message):
    __slots__ = ("value", "error")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    value: _types_pb2.FeatureValue
    error: CellError
    def __init__(self, value: _Optional[_Union[_types_pb2.FeatureValue, _Mapping]] = ..., error: _Optional[_Union[CellError, _Mapping]] = ...) -> None: ...

class BatchGetRow(_message.Message):
    __slots__ = ("keys", "cells")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEYS_FIELD_NUMBER: _ClassVar[int]
    CELLS_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.ScalarMap[str, str]
    cells: _containers.RepeatedCompositeFieldContainer[BatchGetCell]
    def __init__(self, keys: _Optional[_Mapping[str, str]] = ..., cells: _Optional[_Iterable[_Union[BatchGetCell, _Mapping]]] = ...) -> None: ...

class BatchGetResponse(_message.Message):
    __slots__ = ("uuid", "selectors", "rows")
    UUID_FIELD_NUMBER: _ClassVar[int]
    SELECTORS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    uuid: str
    selectors: _containers.RepeatedScalarFieldContainer[str]
    rows: _containers.RepeatedCompositeFieldContainer[BatchGetRow]
    def __init__(self, uuid: _Optional[str] = ..., selectors: _Optional[_Iterable[str]] = ..., rows: _Optional[_Iterable[_Union[BatchGetRow, _Mapping]]] = ...) -> None: ...
