"""The hand-written OpenAPI 3.1 document of the REST accessor (served at ``/openapi.json``).

Written by hand, next to the routes it describes, rather than generated: the wire shapes are
the contract (SPEC 5 and 8) and should change only on purpose. ``tests/integration/
test_rest_fuzz.py`` runs schemathesis against it, so it must stay accurate. Pure.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["openapi_document"]

_REF = "#/components/schemas/"


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "Malformed request: bad selector, missing key, wrong JSON shape.",
        404: "Unknown feature, model, namespace, data source or route.",
        405: "The route exists, not for this method.",
        409: "Write to a model, or rows pushed to a DataSource that is not of kind push.",
        413: "Request body over the server's limit.",
        415: "Unsupported request content type.",
        422: "Well-formed request whose value does not fit the feature (or invalid rows).",
        502: "The feature's program failed.",
        503: "The asset is not ready, or the state store is unavailable (Retry-After).",
        504: "The feature's timeout passed with no usable value.",
    }
    return {str(c): _json(_ref("Error"), text[c]) for c in codes}


_READ_ERRORS = (400, 404, 405, 502, 503, 504)
_WRITE_ERRORS = (400, 404, 405, 409, 413, 415, 422, 503)

_SELECTOR = {
    "name": "selector",
    "in": "path",
    "required": True,
    "description": "`[namespace.]name[+aggr][@-version]`, case-insensitive; namespace "
    "`default` when absent.",
    "schema": {"type": "string", "examples": ["default.spend+sum", "clicks", "price@-1"]},
}

_KEYS_QUERY = {
    "name": "keys",
    "in": "query",
    "required": False,
    "description": "Entity keys, one query parameter per key: `K=V` or `keys.K=V`.",
    "style": "form",
    "explode": True,
    "schema": {"type": "object", "additionalProperties": {"type": "string"}},
}

_VALUE = {
    "description": "A value of the feature's primitive (RFC 3339 strings for timestamps); "
    "null when there is none.",
    "type": ["integer", "number", "string", "boolean", "array", "null"],
}

_TIMESTAMP = {"type": ["string", "null"], "format": "date-time"}

_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "examples": ["NOT_FOUND", "INVALID_ARGUMENT"]},
                    "message": {"type": "string"},
                    "problems": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["row", "reason"],
                            "properties": {
                                "row": {"type": "integer"},
                                "reason": {"type": "string"},
                            },
                        },
                    },
                },
            }
        },
    },
    "Keys": {
        "type": "object",
        "description": "Key name to value; integers are accepted and read as their string.",
        "additionalProperties": {"type": ["string", "integer"]},
    },
    "Value": _VALUE,
    "FeatureValue": {
        "type": "object",
        "required": ["fqn", "selector", "keys", "value", "timestamp", "fresh"],
        "properties": {
            "fqn": {"type": "string"},
            "selector": {"type": "string", "description": "The normalized selector."},
            "keys": {"type": "object", "additionalProperties": {"type": "string"}},
            "value": _VALUE,
            "timestamp": _TIMESTAMP,
            "fresh": {"type": "boolean"},
        },
    },
    "Cell": {
        "type": "object",
        "required": ["value", "timestamp", "fresh"],
        "properties": {"value": _VALUE, "timestamp": _TIMESTAMP, "fresh": {"type": "boolean"}},
    },
    "BatchGetRequest": {
        "type": "object",
        "required": ["selectors", "entities"],
        "properties": {
            "selectors": {"type": "array", "items": {"type": "string"}},
            "entities": {"type": "array", "items": _ref("Keys")},
        },
    },
    "BatchGetResponse": {
        "type": "object",
        "required": ["selectors", "results"],
        "description": "One result per entity, in request order; `values` maps each "
        "normalized selector to its cell, or to an error for that cell alone.",
        "properties": {
            "selectors": {"type": "array", "items": {"type": "string"}},
            "results": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["keys", "values"],
                    "properties": {
                        "keys": {"type": "object", "additionalProperties": {"type": "string"}},
                        "values": {
                            "type": "object",
                            "additionalProperties": {
                                "oneOf": [_ref("Cell"), _ref("Error")],
                            },
                        },
                    },
                },
            },
        },
    },
    "WriteRequest": {
        "type": "object",
        "required": ["value"],
        "properties": {
            "keys": _ref("Keys"),
            "value": _VALUE,
            "timestamp": {
                "description": "Event time: RFC 3339, or epoch seconds/milliseconds; now "
                "when absent.",
                "type": ["string", "number", "null"],
            },
        },
    },
    "WriteResult": {
        "type": "object",
        "required": ["fqn", "keys", "value", "timestamp", "applied"],
        "properties": {
            "fqn": {"type": "string"},
            "keys": {"type": "object", "additionalProperties": {"type": "string"}},
            "value": _VALUE,
            "timestamp": _TIMESTAMP,
            "applied": {
                "type": "boolean",
                "description": "False when older than the stored value or the staleness.",
            },
        },
    },
    "Descriptor": {
        "type": "object",
        "required": ["resource", "fqn", "ready", "reason", "message"],
        "properties": {
            "resource": {"enum": ["Feature", "Model"]},
            "selector": {"type": "string"},
            "fqn": {"type": "string"},
            "namespace": {"type": "string"},
            "name": {"type": "string"},
            "kind": {"type": "string", "description": "Builder kind: push, streaming, ..."},
            "primitive": {"type": "string"},
            "aggr": {"type": "array", "items": {"type": "string"}},
            "freshness": {"type": "string", "description": "Go duration."},
            "staleness": {"type": "string"},
            "timeout": {"type": "string"},
            "keys": {"type": "array", "items": {"type": "string"}},
            "keepPrevious": {
                "type": ["object", "null"],
                "properties": {"versions": {"type": "integer"}, "over": {"type": "string"}},
            },
            "dataSource": {"type": ["string", "null"]},
            "features": {"type": "array", "items": {"type": "string"}},
            "keyFeature": {"type": "string"},
            "modelServer": {"type": "string"},
            "modelFramework": {"type": ["string", "null"]},
            "dependencies": {"type": "array", "items": {"type": "string"}},
            "ready": {"type": "boolean"},
            "reason": {"type": "string"},
            "message": {"type": "string"},
        },
    },
    "PushResult": {
        "type": "object",
        "required": ["rows", "updates", "applied"],
        "properties": {
            "rows": {"type": "integer"},
            "updates": {"type": "integer", "description": "Feature updates the rows produced."},
            "applied": {"type": "integer", "description": "Updates that changed online state."},
        },
    },
    "FeastRequest": {
        "type": "object",
        "required": ["features", "entities"],
        "properties": {
            "features": {
                "type": "array",
                "minItems": 1,
                "items": {"type": "string"},
                "description": "Selectors; `namespace:selector` is accepted too.",
            },
            "entities": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": {
                    "type": "array",
                    "items": {"type": ["string", "integer"]},
                },
            },
            "full_feature_names": {"type": "boolean"},
        },
    },
    "FeastResponse": {
        "type": "object",
        "required": ["metadata", "results"],
        "properties": {
            "metadata": {
                "type": "object",
                "required": ["feature_names"],
                "properties": {"feature_names": {"type": "array", "items": {"type": "string"}}},
            },
            "results": {
                "type": "array",
                "description": "Column-major: entity columns first, then one per feature.",
                "items": {
                    "type": "object",
                    "required": ["values", "statuses", "event_timestamps"],
                    "properties": {
                        "values": {"type": "array", "items": _VALUE},
                        "statuses": {
                            "type": "array",
                            "items": {
                                "enum": ["PRESENT", "NOT_FOUND", "NULL_VALUE", "OUTSIDE_MAX_AGE"]
                            },
                        },
                        "event_timestamps": {
                            "type": "array",
                            "items": {"type": "string", "format": "date-time"},
                        },
                    },
                },
            },
        },
    },
}


def _write(op: str, summary: str) -> dict[str, Any]:
    return {
        "operationId": op,
        "summary": summary,
        "parameters": [_SELECTOR],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _ref("WriteRequest")}},
        },
        "responses": {
            "200": _json(_ref("WriteResult"), "What the write did."),
            **_errors(*_WRITE_ERRORS),
        },
    }


def _plain(op: str, summary: str, schema: dict[str, Any], *errors: int) -> dict[str, Any]:
    return {
        "operationId": op,
        "summary": summary,
        "responses": {"200": _json(schema, summary), **_errors(*errors)},
    }


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route (a fresh, independent dict each call)."""
    prefix = "/api/v1alpha1"
    status = {"type": "object", "properties": {"status": {"type": "string"}}}
    paths: dict[str, Any] = {
        f"{prefix}/features/{{selector}}": {
            "get": {
                "operationId": "getFeature",
                "summary": "Get a feature value or prediction.",
                "parameters": [_SELECTOR, _KEYS_QUERY],
                "responses": {
                    "200": _json(_ref("FeatureValue"), "The value (null when there is none)."),
                    **_errors(*_READ_ERRORS),
                },
            },
            "put": _write("setFeature", "Set: replace the value."),
        },
        f"{prefix}/features/{{selector}}:append": {
            "post": _write("appendFeature", "Append one element to a list feature."),
        },
        f"{prefix}/features/{{selector}}:incr": {
            "post": _write("incrFeature", "Add to an int or float feature."),
        },
        f"{prefix}/features/{{selector}}:update": {
            "post": _write("updateFeature", "Set scalars, append to lists, add to windows."),
        },
        f"{prefix}/features:batchGet": {
            "post": {
                "operationId": "batchGetFeatures",
                "summary": "Every selector for every entity.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("BatchGetRequest")}},
                },
                "responses": {
                    "200": _json(_ref("BatchGetResponse"), "One result per entity."),
                    **_errors(400, 404, 405, 413, 415, 503),
                },
            }
        },
        f"{prefix}/descriptors": {
            "get": _plain(
                "listDescriptors",
                "Every deployed feature and model, with status.",
                {
                    "type": "object",
                    "required": ["descriptors"],
                    "properties": {"descriptors": {"type": "array", "items": _ref("Descriptor")}},
                },
                405,
            )
        },
        f"{prefix}/descriptors/{{selector}}": {
            "get": {
                **_plain("getDescriptor", "One feature or model.", _ref("Descriptor"), 400, 404),
                "parameters": [_SELECTOR],
            }
        },
        f"{prefix}/datasources/{{namespace}}/{{name}}/rows": {
            "post": {
                "operationId": "pushRows",
                "summary": "Push rows into a DataSource of kind push; answers after the writes.",
                "parameters": [
                    {
                        "name": "namespace",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string"},
                    },
                    {
                        "name": "name",
                        "in": "path",
                        "required": True,
                        "description": "Kubernetes name (`-`) or its underscore form.",
                        "schema": {"type": "string"},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"type": "array", "items": {"type": "object"}}
                        },
                        "application/x-ndjson": {
                            "schema": {"type": "string", "description": "One JSON object a line."}
                        },
                    },
                },
                "responses": {
                    "200": _json(_ref("PushResult"), "Rows written."),
                    **_errors(400, 404, 405, 409, 413, 415, 422, 503),
                },
            }
        },
        "/get-online-features": {
            "post": {
                "operationId": "feastGetOnlineFeatures",
                "summary": "Feast-compatible read (Feast's request and column-major response).",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("FeastRequest")}},
                },
                "responses": {
                    "200": _json(_ref("FeastResponse"), "Feast's response shape."),
                    **_errors(*_READ_ERRORS, 413, 415),
                },
            }
        },
        "/healthz": {"get": _plain("healthz", "Liveness.", status)},
        "/readyz": {"get": _plain("readyz", "Readiness: the state store answers.", status, 503)},
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics.",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": _plain("openapi", "This document.", {"type": "object"}),
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Raptor REST accessor",
            "version": "v1alpha1",
            "description": "Feature values, predictions and low-level writes. Errors are "
            '`{"error": {"code", "message"}}`.',
        },
        "paths": paths,
        "components": {"schemas": copy.deepcopy(_SCHEMAS)},
    }
