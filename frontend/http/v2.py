"""The Open Inference Protocol (KServe V2) under /v2: health, model metadata and infer, for
Triton's, KServe's and MLServer's clients. Every model in the store answers to its id or its
name; the default model to its name and to `default`. Tensors: frontend/http/open_inference.py.

Inputs: `image` (BYTES, one encoded image per element), or `input` (the prepared tensor
[n, h, w, 3]: UINT8 pixels, or FP32 as the model takes it, normalised). Outputs: `probabilities`
FP32 [n, classes], `labels` BYTES [n, k] and `scores` FP32 [n, k], the top k (parameter `top_k`),
and `errors` BYTES [n]: "" for each image classified, "code: message" for one that was not.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from flask import Blueprint, Response, jsonify, request

from frontend.answers import Result, every_image
from frontend.dataplane import MODEL_VERSION
from frontend.dataplane.models import ModelSource
from frontend.errors import InvalidField
from frontend.http import auth, forms, plane, protocol_error
from frontend.http.forms import MAX_TOP_K
from frontend.http.health import check_ready
from frontend.http.open_inference import Tensor, encode_infer_response, parse_infer_request
from protocol import ServiceError

bp = Blueprint("v2", __name__, url_prefix="/v2")
bp.register_error_handler(ServiceError, protocol_error)
OUTPUTS = ("probabilities", "labels", "scores", "errors")


def _server_version() -> str:
    try:
        return version("mobilenet-service")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return "unknown"


@bp.get("")
def server_metadata() -> Response:
    return jsonify(
        {
            "name": "mobilenet-service",
            "version": _server_version(),
            "extensions": ["binary_tensor_data"],
        }
    )


@bp.get("/health/live")
def live() -> Response:
    return jsonify({"live": True})


@bp.get("/health/ready")
def ready() -> tuple[Response, int]:
    """The same check as /readyz, sharing its answer."""
    (_, status), _ = plane().readiness.answer(check_ready)
    return jsonify({"ready": status == 200}), status


def _input_datatype(model: ModelSource) -> str:
    return "UINT8" if model.takes_pixels else "FP32"


def _metadata(model: ModelSource, name: str) -> dict[str, Any]:
    height, width = model.size(plane().settings.input_size)
    classes = model.classes
    return {
        "name": name,
        "versions": [MODEL_VERSION],
        "platform": model.describe()["format"],
        "inputs": [
            {"name": "image", "datatype": "BYTES", "shape": [-1]},
            {"name": "input", "datatype": _input_datatype(model), "shape": [-1, height, width, 3]},
        ],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
            {"name": "labels", "datatype": "BYTES", "shape": [-1, -1]},
            {"name": "scores", "datatype": "FP32", "shape": [-1, -1]},
            {"name": "errors", "datatype": "BYTES", "shape": [-1]},
        ],
        "parameters": {"id": model.describe()["id"], "normalization": model.input_description()},
    }


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
@auth.api
def model_metadata(name: str, version: str | None = None) -> Response:
    return jsonify(_metadata(plane().model(name, version), name))


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
@auth.api
def model_ready(name: str, version: str | None = None) -> Response:
    plane().model(name, version)  # 404 when there is no such model
    return jsonify({"name": name, "ready": True})


def _top_k(parameters: dict[str, Any]) -> int:
    value = parameters.get("top_k", plane().settings.default_top_k)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_TOP_K:
        raise InvalidField(f"parameters.top_k must be an integer from 1 to {MAX_TOP_K}")
    return value


def _classify(model: ModelSource, inputs: dict[str, Tensor], top_k: int) -> list[Result]:
    """One result per image: an image that cannot be read gets its error in `errors` and
    fails only its own row; when none can be read, the call fails with the first one's."""
    if len(inputs) != 1:
        raise InvalidField("send one input: 'image' (BYTES) or 'input' (the prepared tensor)")
    client = forms.client(request)
    (tensor,) = inputs.values()
    if tensor.name == "image":
        if not tensor.data:
            raise InvalidField("inputs 'image' holds no image")
        results = plane().classify(list(tensor.data), model, top_k, client)
        if all(isinstance(r, ServiceError) for r in results):
            every_image(results, "image")  # raises the first
        return results
    plane().admission.count(tensor.shape[0] if tensor.shape else 0)  # before any conversion
    pixels = model.pixels_from_input(tensor.data, tensor.shape, plane().settings.input_size)
    return plane().classify_pixels(pixels, model, top_k, client)


def _outputs(results: list[Result], classes: int, top_k: int) -> list[Tensor]:
    """The outputs, a row per image; a failed image's row is zeros and empty labels, and its
    error is in `errors` ("code: message"; "" for the images that were classified)."""
    k = min(top_k, classes)
    probabilities = np.zeros((len(results), classes), dtype=np.float32)
    scores = np.zeros((len(results), k), dtype=np.float32)
    labels, errors = [], []
    for row, result in enumerate(results):
        if isinstance(result, ServiceError):
            labels += [b""] * k
            errors.append(f"{result.code}: {result.message}".encode())
            continue
        probabilities[row] = result.probabilities
        scores[row] = [p.probability for p in result.predictions]
        labels += [p.label.encode() for p in result.predictions]
        errors.append(b"")
    return [
        Tensor("probabilities", "FP32", [len(results), classes], probabilities),
        Tensor("labels", "BYTES", [len(results), k], labels),
        Tensor("scores", "FP32", [len(results), k], scores),
        Tensor("errors", "BYTES", [len(results)], errors),
    ]


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
@auth.api
def infer(name: str, version: str | None = None) -> Response:
    model = plane().model(name, version)
    accepted = {"image": {"BYTES"}, "input": {"UINT8", "FP32"}}
    parsed = parse_infer_request(
        request.get_data(),
        request.headers.get("Inference-Header-Content-Length"),
        accepted,
        plane().settings.max_json_bytes,
    )
    top_k = _top_k(parsed.parameters)
    outputs = _outputs(_classify(model, parsed.inputs, top_k), model.classes, top_k)
    if parsed.outputs is not None and parsed.outputs:
        unknown = sorted(set(parsed.outputs) - set(OUTPUTS))
        if unknown:
            raise InvalidField(f"no output named {unknown[0]!r}; outputs: {', '.join(OUTPUTS)}")
        outputs = [o for o in outputs if o.name in parsed.outputs]
        binary = {n for n, as_binary in parsed.outputs.items() if as_binary}
    else:  # all outputs; binary when binary_data_output asked for it ({} here)
        binary = set(OUTPUTS) if parsed.outputs == {} else set()
    body, header_length = encode_infer_response(name, MODEL_VERSION, parsed.id, outputs, binary)
    if header_length is None:
        return Response(body, mimetype="application/json")
    response = Response(body, mimetype="application/octet-stream")
    response.headers["Inference-Header-Content-Length"] = str(header_length)
    return response
