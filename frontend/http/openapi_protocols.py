"""The routes of the other serving protocols for the OpenAPI document: the Open Inference
Protocol (frontend/http/v2.py) and TensorFlow Serving's REST API (frontend/http/tf_serving.py).
Both answer errors as {"error": message, "code": kind}."""

from __future__ import annotations

from typing import Any

BEARER = [{}, {"bearer": []}]  # open unless a token is set

V2_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {"type": "string", "description": "what was wrong"},
        "code": {"type": "string", "description": "which kind of error, as in the JSON API"},
    },
}


def json_content(schema: dict[str, Any], description: str) -> dict[str, Any]:
    """A response of JSON (frontend/http/openapi_document.py uses it too)."""
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def json_body(schema: dict[str, Any]) -> dict[str, Any]:
    """A required JSON request body (frontend/http/openapi_document.py uses it too)."""
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/V2Error"}
    return {str(s): json_content(error, "the protocol's error body") for s in statuses}


_TENSOR = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "data": {"type": "array", "description": "flat or nested, row-major"},
        "parameters": {"type": "object"},
    },
}


def path_parameter(name: str, description: str) -> dict[str, Any]:
    """A string in the route's path (frontend/http/openapi_document.py uses it too)."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }


_NAME = path_parameter(
    "name", "a registered model's id or name; `default` or its name: the default"
)
_VERSION = path_parameter("version", "1 (each registration is one version)")

_METADATA = {
    "summary": "Model metadata: inputs (`image` BYTES, `input` the prepared tensor), outputs",
    "security": BEARER,
    "responses": {
        "200": json_content({"type": "object"}, "the model's metadata"),
        **_errors(401, 404, 409),
    },
}
_READY = {
    "summary": "Whether the model can run now: the server is ready and, for a model other "
    "than the default, the sandbox is there",
    "security": BEARER,
    "responses": {
        "200": json_content({"type": "object"}, "ready"),
        **_errors(401, 404, 409),
        "503": json_content({"type": "object"}, "not ready"),
    },
}
_CONFIG = {
    "summary": "Triton's model configuration, as far as it applies",
    "security": BEARER,
    "responses": {
        "200": json_content({"type": "object"}, "the model's configuration"),
        **_errors(401, 404, 409),
    },
}
_STATS = {
    "summary": "Triton's statistics extension: calls and images that succeeded and failed",
    "security": BEARER,
    "responses": {
        "200": json_content({"type": "object"}, "model_stats"),
        **_errors(401, 404, 409),
    },
}
_INFER = {
    "summary": "Classify: encoded images as BYTES `image`, or the prepared UINT8/FP32 `input` "
    "[n, h, w, 3]; outputs `probabilities`, `labels` and `scores` (the top `top_k`, a "
    'request parameter) and `errors` (per image: "" or what was wrong). With the binary-tensor '
    "extension: the JSON header, "
    "Inference-Header-Content-Length bytes long, then the tensors' bytes",
    "security": BEARER,
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["inputs"],
                    "properties": {
                        "id": {"type": "string"},
                        "inputs": {"type": "array", "items": _TENSOR},
                        "outputs": {"type": "array", "items": {"type": "object"}},
                        "parameters": {"type": "object"},
                    },
                }
            },
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        },
    },
    "responses": {
        "200": {
            "description": "the outputs; binary ones after the JSON header",
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **_errors(400, 401, 403, 404, 409, 413, 422, 429, 502, 503, 504, 507),
    },
}

PATHS: dict[str, Any] = {
    "/v2": {
        "get": {
            "summary": "Open Inference Protocol: server metadata",
            "responses": {"200": json_content({"type": "object"}, "name, version, extensions")},
        }
    },
    "/v2/health/live": {
        "get": {
            "summary": "Liveness",
            "responses": {"200": json_content({"type": "object"}, "live")},
        }
    },
    "/v2/health/ready": {
        "get": {
            "summary": "Readiness, as /readyz",
            "responses": {
                "200": json_content({"type": "object"}, "ready"),
                "503": json_content({"type": "object"}, "not ready"),
            },
        }
    },
    "/v2/models/{name}": {"parameters": [_NAME], "get": _METADATA},
    "/v2/models/{name}/versions/{version}": {"parameters": [_NAME, _VERSION], "get": _METADATA},
    "/v2/models/{name}/ready": {"parameters": [_NAME], "get": _READY},
    "/v2/models/{name}/versions/{version}/ready": {
        "parameters": [_NAME, _VERSION],
        "get": _READY,
    },
    "/v2/models/{name}/config": {"parameters": [_NAME], "get": _CONFIG},
    "/v2/models/{name}/versions/{version}/config": {
        "parameters": [_NAME, _VERSION],
        "get": _CONFIG,
    },
    "/v2/models/{name}/stats": {"parameters": [_NAME], "get": _STATS},
    "/v2/models/{name}/versions/{version}/stats": {
        "parameters": [_NAME, _VERSION],
        "get": _STATS,
    },
    "/v2/models/{name}/infer": {"parameters": [_NAME], "post": _INFER},
    "/v2/models/{name}/versions/{version}/infer": {
        "parameters": [_NAME, _VERSION],
        "post": _INFER,
    },
}


_TF_NAME = {**_NAME}
_LABEL = path_parameter("label", "`stable` or `latest`: both name version 1")
_IMAGES_BODY = json_body({"type": "object"})

TF_SERVING_PATHS: dict[str, Any] = {
    "/v1/models/{name}": {
        "parameters": [_TF_NAME],
        "get": {
            "summary": "TF Serving: model status",
            "security": BEARER,
            "responses": {
                "200": json_content({"type": "object"}, "model_version_status"),
                **_errors(401, 404, 409),
            },
        },
    },
    "/v1/models/{name}/versions/{version}": {
        "parameters": [_TF_NAME, _VERSION],
        "get": {
            "summary": "TF Serving: model status of a version (1)",
            "security": BEARER,
            "responses": {
                "200": json_content({"type": "object"}, "model_version_status"),
                **_errors(400, 401, 404, 409),
            },
        },
    },
    "/v1/models/{name}/metadata": {
        "parameters": [_TF_NAME],
        "get": {
            "summary": "TF Serving: the signature (image_bytes in, probabilities out)",
            "security": BEARER,
            "responses": {
                "200": json_content({"type": "object"}, "metadata"),
                **_errors(401, 404, 409),
            },
        },
    },
    "/v1/models/{name}:predict": {
        "parameters": [_TF_NAME],
        "post": {
            "summary": 'TF Serving: {"instances": [{"b64": ...}]} to {"predictions": '
            "[probabilities]}",
            "security": BEARER,
            "requestBody": _IMAGES_BODY,
            "responses": {
                "200": json_content({"type": "object"}, "predictions"),
                **_errors(400, 401, 403, 404, 409, 413, 422, 429, 502, 503, 504, 507),
            },
        },
    },
    "/v1/models/{name}:classify": {
        "parameters": [_TF_NAME],
        "post": {
            "summary": 'TF Serving: {"examples": [{"image": {"b64": ...}}], "top_k": 5} to '
            '{"results": [[[label, score]]]}',
            "security": BEARER,
            "requestBody": _IMAGES_BODY,
            "responses": {
                "200": json_content({"type": "object"}, "results"),
                **_errors(400, 401, 403, 404, 409, 413, 422, 429, 502, 503, 504, 507),
            },
        },
    },
}


def _also_versioned_and_labelled(paths: dict[str, Any]) -> dict[str, Any]:
    """Each TF Serving route also under /versions/{version} and /labels/{label}."""
    more = {}
    for path, item in paths.items():
        head, colon, verb = path.partition(":")
        if head.endswith("/versions/{version}"):
            continue
        for part, parameter in (("versions/{version}", _VERSION), ("labels/{label}", _LABEL)):
            if colon:
                where = f"{head}/{part}:{verb}"
            elif head.endswith("/metadata"):
                where = head.replace("/metadata", f"/{part}/metadata")
            else:
                where = f"{head}/{part}"
            more[where] = {**item, "parameters": [*item["parameters"], parameter]}
    return {**paths, **more}


TF_SERVING_PATHS["/v1/models/{name}:regress"] = {
    "parameters": [_TF_NAME],
    "post": {
        "summary": "TF Serving: refused, a classifier has no regression (400)",
        "security": BEARER,
        "requestBody": _IMAGES_BODY,
        "responses": {**_errors(400, 401, 404, 409)},
    },
}
TF_SERVING_PATHS = _also_versioned_and_labelled(TF_SERVING_PATHS)
