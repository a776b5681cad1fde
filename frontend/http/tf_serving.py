"""TensorFlow Serving's REST API under /v1/models, for its clients: model status and metadata,
`:predict` and `:classify` with images as {"b64": ...}. Models are addressed as in /v2: by id or
name, the default as `default` or by its name. Errors are TF Serving's {"error": message}."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from flask import Blueprint, Response, jsonify, request

from frontend.answers import Classification, every_image
from frontend.dataplane import MODEL_VERSION
from frontend.errors import InvalidField, TooManyImages
from frontend.http import auth, forms, plane, protocol_error
from frontend.http.forms import MAX_TOP_K
from frontend.http.open_inference import parse_json
from protocol import ServiceError

bp = Blueprint("tf_serving", __name__, url_prefix="/v1/models")
bp.register_error_handler(ServiceError, protocol_error)
IMAGE_KEYS = ("b64", "image_bytes", "image", "inputs", "input")


def _b64(value: Any, where: str) -> bytes:
    """An image given as {"b64": "..."}, or under one of IMAGE_KEYS as that."""
    if isinstance(value, dict) and set(value) == {"b64"} and isinstance(value["b64"], str):
        try:
            return base64.b64decode(value["b64"], validate=True)
        except (binascii.Error, ValueError):
            raise InvalidField(f"{where}: 'b64' is not base64") from None
    if isinstance(value, dict) and len(value) == 1:
        key, inner = next(iter(value.items()))
        if key in IMAGE_KEYS:
            return _b64(inner, f"{where}.{key}")
    raise InvalidField(f'{where} must be an image as {{"b64": "<base64 of the file>"}}')


def _images(body: Any, key: str) -> list[bytes]:
    if not isinstance(body, dict) or not isinstance(body.get(key), list) or not body[key]:
        raise InvalidField(f"the body must be a JSON object with a non-empty list '{key}'")
    return [_b64(item, f"{key}[{i}]") for i, item in enumerate(body[key])]


def _classify(name: str, key: str) -> list[Classification]:
    settings = plane().settings
    model = plane().model(name)
    data = request.get_data()
    # Each image is an object or two; base64 has no braces. Counted before parsing, as a small
    # object costs a Python dict many times its text.
    if data.count(b"{") > 2 * settings.max_images_per_call + 1:
        raise TooManyImages(
            f"{data.count(b'{')} JSON objects: more images than MAX_IMAGES_PER_CALL allows"
        )
    # Whatever the Content-Type (its clients rarely say JSON).
    body = parse_json(data, settings.max_json_bytes, "the body")
    images = _images(body, key)
    top_k = body.get("top_k", settings.default_top_k)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidField(f"top_k must be an integer from 1 to {MAX_TOP_K}")
    results = plane().classify(images, model, top_k, forms.client(request))
    return every_image(results, key)


@bp.get("/<name>")
@bp.get("/<name>/versions/<version>")
@auth.api
def status(name: str, version: str | None = None) -> Response:
    plane().model(name, version)
    return jsonify(
        {
            "model_version_status": [
                {
                    "version": MODEL_VERSION,
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
            ]
        }
    )


@bp.get("/<name>/metadata")
@auth.api
def metadata(name: str) -> Response:
    model = plane().model(name)
    height, width = model.size(plane().settings.input_size)
    return jsonify(
        {
            "model_spec": {"name": name, "version": MODEL_VERSION},
            "metadata": {
                "signature_def": {
                    "serving_default": {
                        "inputs": {"image_bytes": {"dtype": "DT_STRING", "shape": [-1]}},
                        "outputs": {
                            "probabilities": {
                                "dtype": "DT_FLOAT",
                                "shape": [-1, model.classes],
                            }
                        },
                        "method_name": "tensorflow/serving/predict",
                    }
                },
                "input_size": [height, width],
            },
        }
    )


@bp.post("/<name>:predict")
@auth.api
def predict(name: str) -> Response:
    """{"instances": [{"b64": ...}, ...]} → {"predictions": [probabilities, ...]}."""
    results = _classify(name, "instances")
    return jsonify({"predictions": [r.probabilities.round(6).tolist() for r in results]})


@bp.post("/<name>:classify")
@auth.api
def classify(name: str) -> Response:
    """{"examples": [{"image": {"b64": ...}}, ...]} → {"results": [[[label, score], ...], ...]},
    the top `top_k` of each."""
    results = _classify(name, "examples")
    return jsonify(
        {"results": [[[p.label, p.probability] for p in r.predictions] for r in results]}
    )
