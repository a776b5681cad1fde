"""The Open Inference Protocol (KServe V2) under /v2: health, model metadata and infer, for
Triton's, KServe's and MLServer's clients. Every model in the store answers to its id or its
name; the default model to its name and to `default`. Tensors: frontend/http/open_inference.py.

Inputs: `image` (BYTES, one encoded image per element), or `input` (the prepared tensor
[n, h, w, 3]: UINT8 pixels, or FP32 as the model takes it, normalised). Outputs: `probabilities`
FP32 [n, classes], `labels` BYTES [n, k] and `scores` FP32 [n, k], the top k (parameter `top_k`),
and `errors` BYTES [n]: "" for each image classified, "code: message" for one that was not.
Extensions: binary tensors, classification (`probabilities` asked for with
`parameters.classification` N: BYTES [n, N] of "score:index:label", as Triton answers), model
configuration and statistics. Request bodies may be gzip or deflate (Content-Encoding).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np
from flask import Blueprint, Response, jsonify, request

from frontend.answers import Result, every_image
from frontend.dataplane import MODEL_VERSION
from frontend.dataplane.models import ModelSource
from frontend.dataplane.statistics import model_statistics
from frontend.errors import InvalidField
from frontend.http import auth, forms, plane
from frontend.http.forms import MAX_TOP_K
from frontend.http.health import check_ready, is_model_ready
from frontend.http.open_inference import (
    InferRequest,
    RequestedOutput,
    Tensor,
    encode_infer_response,
    parse_infer_request,
)
from frontend.http.request import decoded_body
from protocol import ServiceError

bp = Blueprint("v2", __name__, url_prefix="/v2")
OUTPUTS = ("probabilities", "labels", "scores", "errors")
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "statistics"]
# The platform names of the protocol ("<project>_<format>"), by what runs the model.
PLATFORMS = {
    "tflite": "tensorflow_tflite",
    "graphdef": "tensorflow_graphdef",
    "savedmodel": "tensorflow_savedmodel",
}


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
            "extensions": EXTENSIONS,
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


def _parameters(model: ModelSource) -> dict[str, str | int | float]:
    """What the protocol's metadata cannot say, as scalars (its parameters are key/value)."""
    described = model.describe()
    flat: dict[str, str | int | float] = {
        "id": described["id"] or "",
        "source_format": described["source_format"],
        "preprocessing": described["preprocessing"],
    }
    for key, value in model.input_description().items():
        flat[f"input_{key}"] = ",".join(map(str, value)) if isinstance(value, list) else value
    return flat


def _metadata(model: ModelSource, name: str) -> dict[str, Any]:
    height, width = model.size(plane().settings.input_size)
    classes = model.classes
    return {
        "name": name,
        "versions": [MODEL_VERSION],
        "platform": PLATFORMS[model.describe()["format"]],
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
        "parameters": _parameters(model),
    }


@bp.get("/models/<name>")
@bp.get("/models/<name>/versions/<version>")
@auth.api
def model_metadata(name: str, version: str | None = None) -> Response:
    return jsonify(_metadata(plane().model(name, version), name))


@bp.get("/models/<name>/ready")
@bp.get("/models/<name>/versions/<version>/ready")
@auth.api
def model_ready(name: str, version: str | None = None) -> tuple[Response, int]:
    """Ready when the server is (its workers run the default model) and, for a model other
    than the default, when the sandbox that runs it is there; else 503, as /v2/health/ready."""
    ready = is_model_ready(plane().model(name, version))  # 404 when there is no such model
    return jsonify({"name": name, "ready": ready}), 200 if ready else 503


@bp.get("/models/<name>/config")
@bp.get("/models/<name>/versions/<version>/config")
@auth.api
def model_config(name: str, version: str | None = None) -> Response:
    """What Triton's model configuration says of a model, as far as it applies here."""
    model = plane().model(name, version)
    height, width = model.size(plane().settings.input_size)
    pixels = "TYPE_UINT8" if model.takes_pixels else "TYPE_FP32"
    return jsonify(
        {
            "name": name,
            "platform": PLATFORMS[model.describe()["format"]],
            "max_batch_size": plane().settings.max_images_per_call,
            "input": [
                {"name": "image", "data_type": "TYPE_STRING", "dims": [1]},
                {"name": "input", "data_type": pixels, "dims": [height, width, 3]},
            ],
            "output": [
                {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [model.classes]},
                {"name": "labels", "data_type": "TYPE_STRING", "dims": [-1]},
                {"name": "scores", "data_type": "TYPE_FP32", "dims": [-1]},
                {"name": "errors", "data_type": "TYPE_STRING", "dims": [1]},
            ],
            "parameters": {k: {"string_value": str(v)} for k, v in _parameters(model).items()},
        }
    )


@bp.get("/models/<name>/stats")
@bp.get("/models/<name>/versions/<version>/stats")
@auth.api
def model_stats(name: str, version: str | None = None) -> Response:
    """Triton's statistics extension: calls and images that succeeded and failed, with their
    time, summed over the server's processes. Stages within a call are in /metrics."""
    model = plane().model(name, version)
    counted = model_statistics(model.id or "")

    def duration(outcome: str) -> dict[str, int]:
        return {
            "count": int(counted[outcome]["calls"]),
            "ns": int(counted[outcome]["seconds"] * 1e9),
        }

    return jsonify(
        {
            "model_stats": [
                {
                    "name": name,
                    "version": MODEL_VERSION,
                    "last_inference": int(counted["last"]["seconds"] * 1000),
                    "inference_count": int(counted["success"]["images"]),
                    "execution_count": int(counted["success"]["calls"]),
                    "inference_stats": {"success": duration("success"), "fail": duration("fail")},
                    "batch_stats": [],
                }
            ]
        }
    )


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


def _classification(results: list[Result], count: int) -> Tensor:
    """The classification extension: each image's top `count` as "score:index:label"."""
    rows = []
    for result in results:
        if isinstance(result, ServiceError):
            rows += [b""] * count
            continue
        labels = result.model.labels(len(result.probabilities))
        top = np.argsort(-result.probabilities, kind="stable")[:count]
        rows += [f"{result.probabilities[i]:.6f}:{i}:{labels[i]}".encode() for i in top]
        rows += [b""] * (count - len(top))
    return Tensor("probabilities", "BYTES", [len(results), count], rows)


def _outputs(
    results: list[Result], classes: int, top_k: int, requested: dict[str, RequestedOutput]
) -> list[Tensor]:
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
    classification = requested.get("probabilities", RequestedOutput(False, 0)).classification
    return [
        _classification(results, classification)
        if classification
        else Tensor("probabilities", "FP32", [len(results), classes], probabilities),
        Tensor("labels", "BYTES", [len(results), k], labels),
        Tensor("scores", "FP32", [len(results), k], scores),
        Tensor("errors", "BYTES", [len(results)], errors),
    ]


def _requested(parsed: InferRequest) -> dict[str, RequestedOutput]:
    """The outputs to answer, by name: those asked for, else all (binary when
    binary_data_output asked for it)."""
    if not parsed.outputs:
        return {n: RequestedOutput(parsed.outputs == {}, 0) for n in OUTPUTS}
    unknown = sorted(set(parsed.outputs) - set(OUTPUTS))
    if unknown:
        raise InvalidField(f"no output named {unknown[0]!r}; outputs: {', '.join(OUTPUTS)}")
    for name, output in parsed.outputs.items():
        if output.classification and name != "probabilities":
            raise InvalidField(f"classification applies to 'probabilities', not {name!r}")
    return parsed.outputs


@bp.post("/models/<name>/infer")
@bp.post("/models/<name>/versions/<version>/infer")
@auth.api
def infer(name: str, version: str | None = None) -> Response:
    model = plane().model(name, version)
    accepted = {"image": {"BYTES"}, "input": {"UINT8", "FP32"}}
    parsed = parse_infer_request(
        decoded_body(request, plane().settings.max_content_length),
        request.headers.get("Inference-Header-Content-Length"),
        accepted,
        plane().settings.max_json_bytes,
        plane().admission.count,
    )
    requested = _requested(parsed)
    top_k = _top_k(parsed.parameters)
    results = _classify(model, parsed.inputs, top_k)
    outputs = [o for o in _outputs(results, model.classes, top_k, requested) if o.name in requested]
    binary = {n for n, output in requested.items() if output.binary}
    body, header_length = encode_infer_response(name, MODEL_VERSION, parsed.id, outputs, binary)
    if header_length is None:
        return Response(body, mimetype="application/json")
    response = Response(body, mimetype="application/octet-stream")
    response.headers["Inference-Header-Content-Length"] = str(header_length)
    return response
