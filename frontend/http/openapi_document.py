"""The HTTP API as an OpenAPI 3.0 document, served at /openapi.json."""

from __future__ import annotations

from typing import Any

from frontend.http.openapi_protocols import BEARER as _BEARER
from frontend.http.openapi_protocols import PATHS as V2_PATHS
from frontend.http.openapi_protocols import TF_SERVING_PATHS, V2_ERROR, json_body, path_parameter
from frontend.http.openapi_protocols import json_content as _json
from frontend.preprocessing import PROFILES


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: int) -> dict[str, Any]:
    meanings = {
        400: "bad input (the error code says which)",
        401: "missing or wrong bearer token",
        403: "models other than the default need the sandbox",
        404: "no such model or route",
        409: "the default model cannot be deleted; a name that several models have",
        413: "request or model over its size limit, or more images than MAX_IMAGES_PER_CALL",
        422: "the model or its labels were refused (op allowlist, cost, tensors, sizes, labels),"
        " or the model crashed its worker",
        429: "this client's uploaded models are already running (Retry-After)",
        502: "the worker died",
        503: "overloaded (Retry-After) or no worker reachable",
        504: "the worker took longer than WORKER_TIMEOUT",
        507: "the worker hit a resource limit, or the model store is full or read-only",
    }
    return {str(s): _json(_ref("Error"), meanings[s]) for s in statuses}


_CLASSIFY_ERRORS = _errors(400, 401, 403, 404, 413, 422, 429, 502, 503, 504, 507)

_NORMALIZATION_FIELDS = {
    "input_mean": {
        "type": "string",
        "description": "one number, or three (R,G,B) separated by commas; with input_std: "
        "(x - mean) / std. Without either, a float model's range is detected",
    },
    "input_std": {"type": "string", "description": "one non-zero number, or three"},
    "input_size": {
        "type": "string",
        "description": "for a graph that fixes no input size: 160 or 160x128 (height x width)",
    },
    "preprocessing": {
        "type": "string",
        "enum": list(PROFILES),
        "description": "how photos are cropped, resized and scaled for the model; by default "
        "as the tool recognised in the model prepares them, else bilinear",
    },
}

_SCHEMAS = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Prediction": {
        "type": "object",
        "properties": {
            "label": {"type": "string"},
            "index": {"type": "integer"},
            "probability": {"type": "number"},
        },
    },
    "Classification": {
        "type": "object",
        "required": ["model", "predictions", "confidence", "timings_ms"],
        "properties": {
            "model": {"type": "object"},
            "labels": {"type": "object"},
            "predictions": {"type": "array", "items": _ref("Prediction")},
            "confidence": {"type": "string", "enum": ["very high", "high", "medium", "low"]},
            "timings_ms": {"type": "object", "additionalProperties": {"type": "number"}},
        },
    },
    "Results": {
        "type": "object",
        "required": ["results"],
        "properties": {
            "results": {
                "type": "array",
                "description": "one entry per image, in order: its classification, or its error",
                "items": {
                    "type": "object",
                    "properties": {
                        "image": {"type": "string", "description": "the part's filename"},
                        "error": {"type": "object"},
                    },
                },
            }
        },
    },
    "Explanation": {
        "type": "object",
        "required": ["label", "grid", "strongest", "overlay_png"],
        "properties": {
            "model": {"type": "object"},
            "label": _ref("Prediction"),
            "grid": {
                "type": "array",
                "description": "rows of regions: how far the label's probability falls with "
                "that region hidden (negative: it rises)",
                "items": {"type": "array", "items": {"type": "number"}},
            },
            "boxes": {
                "type": "array",
                "description": "each region as [left, top, right, bottom], fractions of the photo",
            },
            "strongest": {"type": "object"},
            "classifications": {"type": "integer"},
            "overlay_png": {"type": "string", "description": "data: URL of the PNG overlay"},
            "timings_ms": {"type": "object"},
        },
    },
    "V2Error": V2_ERROR,
    "Model": {
        "type": "object",
        "required": ["id", "name", "format", "input", "output", "normalization"],
        "properties": {
            "id": {"type": "string", "description": "sha256 of the model bytes"},
            "name": {"type": "string"},
            "format": {"type": "string", "enum": ["graphdef", "tflite", "savedmodel"]},
            "input": {"type": "object"},
            "output": {"type": "object"},
            "normalization": {"type": "object"},
            "labels": {"type": "object"},
            "default": {"type": "boolean"},
        },
    },
}


def _multipart(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": properties, "required": required}
            }
        },
    }


_BINARY = {"type": "string", "format": "binary"}
_MODEL_KEY = path_parameter("key", "the model's id or name")
_NAME = {
    "type": "string",
    "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
    "description": "unique; not 64 hex digits, not 'default'",
}
_MODEL_FIELDS = {
    "model": {"type": "string", "description": "a registered model's id or name"},
    "model_file": _BINARY,
    "label_file": _BINARY,
}
_CLASSIFY_FIELDS = {
    "image": _BINARY,
    "top_k": {"type": "integer", "minimum": 1, "maximum": 100},
    **_NORMALIZATION_FIELDS,
}

DOCUMENT: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {
        "title": "mobilenet-service",
        "version": "1",
        "description": "Image classification with MobileNet models in sandboxed workers.",
    },
    "paths": {
        "/api/v1/classify": {
            "post": {
                "summary": "Classify one image, or several (one `image` part each, or `images` "
                "parts: up to MAX_IMAGES_PER_CALL), with the default, a registered or an "
                "uploaded model",
                "security": _BEARER,
                "requestBody": _multipart(
                    {
                        **_CLASSIFY_FIELDS,
                        "images": {"type": "array", "items": _BINARY},
                        **_MODEL_FIELDS,
                    },
                    [],
                ),
                "responses": {
                    "200": _json(
                        {"oneOf": [_ref("Classification"), _ref("Results")]},
                        "one image: best predictions first; several: {results: [...]}",
                    ),
                    **_CLASSIFY_ERRORS,
                },
            }
        },
        "/api/v1/explain": {
            "post": {
                "summary": "Why this label: an occlusion map of `label` (default: the top one) "
                "over a `grid` of regions, and the photo with the regions that mattered in red",
                "security": _BEARER,
                "requestBody": _multipart(
                    {
                        **_CLASSIFY_FIELDS,
                        **_MODEL_FIELDS,
                        "label": {"type": "string", "description": "a label or class number"},
                        "grid": {"type": "integer", "minimum": 3, "maximum": 12, "default": 7},
                        "format": {"type": "string", "enum": ["json", "png"]},
                    },
                    ["image"],
                ),
                "responses": {
                    "200": {
                        "description": "the map (format=png: the overlay alone)",
                        "content": {
                            "application/json": {"schema": _ref("Explanation")},
                            "image/png": {"schema": {"type": "string", "format": "binary"}},
                        },
                    },
                    **_CLASSIFY_ERRORS,
                },
            }
        },
        "/api/v1/models": {
            "get": {
                "summary": "List registered models (the default included)",
                "security": _BEARER,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "properties": {"models": {"type": "array", "items": _ref("Model")}},
                        },
                        "the models",
                    ),
                    **_errors(401),
                },
            },
            "post": {
                "summary": "Register a model: probed in a worker, then stored",
                "security": _BEARER,
                "requestBody": _multipart(
                    {
                        "model": _BINARY,
                        "labels": _BINARY,
                        "name": _NAME,
                        "input_tensor": {"type": "string"},
                        "output_tensor": {"type": "string"},
                        **_NORMALIZATION_FIELDS,
                    },
                    ["model", "labels"],
                ),
                "responses": {
                    "200": _json(
                        _ref("Model"),
                        "already registered (same bytes, labels and options); renamed when "
                        "another name was asked (renamed_from)",
                    ),
                    "201": _json(_ref("Model"), "registered"),
                    **_errors(400, 401, 403, 409, 413, 422, 429, 502, 503, 504, 507),
                },
            },
        },
        "/api/v1/models/{key}": {
            "parameters": [_MODEL_KEY],
            "get": {
                "summary": "Describe a model",
                "security": _BEARER,
                "responses": {"200": _json(_ref("Model"), "the model"), **_errors(401, 404)},
            },
            "patch": {
                "summary": "Rename a model",
                "security": _BEARER,
                "requestBody": json_body(
                    {"type": "object", "properties": {"name": _NAME}, "required": ["name"]}
                ),
                "responses": {
                    "200": _json(_ref("Model"), "renamed (renamed_from: the old name)"),
                    **_errors(400, 401, 404, 409),
                },
            },
            "delete": {
                "summary": "Delete a model",
                "security": _BEARER,
                "responses": {
                    "200": _json({"type": "object"}, "deleted"),
                    **_errors(401, 404, 409),
                },
            },
        },
        "/api/v1/models/{key}/classify": {
            "parameters": [_MODEL_KEY],
            "post": {
                "summary": "Classify an image with a registered model",
                "security": _BEARER,
                "requestBody": _multipart(_CLASSIFY_FIELDS, ["image"]),
                "responses": {
                    "200": _json(_ref("Classification"), "best predictions first"),
                    **_CLASSIFY_ERRORS,
                },
            },
        },
        "/infer": {
            "post": {
                "summary": "Seed-compatible: the answer as an HTML sentence",
                "security": _BEARER,
                "requestBody": _multipart(
                    {"image_file": _BINARY, "model_file": _BINARY, "label_file": _BINARY},
                    ["image_file"],
                ),
                "responses": {
                    "200": {
                        "description": "Detected <b>LABEL</b> with <u>CONFIDENCE</u> confidence.",
                        "content": {"text/html": {"schema": {"type": "string"}}},
                    },
                    **_CLASSIFY_ERRORS,
                },
            }
        },
        **V2_PATHS,
        **TF_SERVING_PATHS,
        "/healthz": {
            "get": {
                "summary": "Liveness",
                "responses": {"200": _json({"type": "object"}, "the process answers")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: a worker runs the default model on a probe image",
                "responses": {
                    "200": _json({"type": "object"}, "ready"),
                    "503": _json({"type": "object"}, "not ready"),
                },
            }
        },
    },
    "components": {
        "schemas": _SCHEMAS,
        "securitySchemes": {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "API_TOKEN for classifying and reading, ADMIN_TOKEN for all",
            }
        },
    },
}
