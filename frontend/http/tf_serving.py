"""TensorFlow Serving's REST API under /v1/models, as its api_rest.md specifies, for its
clients: model status and metadata, `:predict` (row and columnar formats) and `:classify` with
images as {"b64": ...}, each also under /versions/1 and /labels/{stable,latest}. Models are
addressed as in /v2: by id or name, the default as `default` or by its name. Their one
signature is `serving_default`; `:regress` is refused, as a classifier has no regression.
Errors are TF Serving's {"error": message}. Bodies may be gzip or deflate (Content-Encoding)."""

from __future__ import annotations

import base64
import binascii
from typing import Any

from flask import Blueprint, Response, jsonify, request

from frontend.answers import Classification, every_image
from frontend.dataplane import MODEL_VERSION
from frontend.dataplane.models import ModelSource
from frontend.errors import InvalidField, ModelNotFound, TooManyImages
from frontend.http import auth, forms, plane
from frontend.http.forms import MAX_TOP_K
from frontend.http.health import is_model_ready
from frontend.http.open_inference import parse_json
from frontend.http.request import decoded_body

bp = Blueprint("tf_serving", __name__, url_prefix="/v1/models")
IMAGE_KEYS = ("b64", "image_bytes", "image", "inputs", "input")
SIGNATURE = "serving_default"
VERSION_LABELS = ("stable", "latest")  # both name the one version a model has


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


def _columnar(body: dict[str, Any]) -> list[bytes]:
    """The columnar format's images: `inputs` is the one input's list, or names it."""
    inputs = body["inputs"]
    if isinstance(inputs, dict) and not set(inputs) & {"b64"}:
        if len(inputs) != 1 or next(iter(inputs)) not in IMAGE_KEYS:
            raise InvalidField(f"'inputs' must name one input, image_bytes; got {sorted(inputs)}")
        inputs = next(iter(inputs.values()))
    if isinstance(inputs, dict):
        inputs = [inputs]  # one image without its batch dimension
    return _images({"inputs": inputs}, "inputs")


def _model(name: str, version: str | None, label: str | None) -> ModelSource:
    if label is not None and label not in VERSION_LABELS:
        raise ModelNotFound(
            f"model {name!r} has no version labelled {label!r:.40}; labels: "
            + ", ".join(VERSION_LABELS)
        )
    return plane().model(name, version)


def _body(key: str) -> dict[str, Any]:
    settings = plane().settings
    data = decoded_body(request, settings.max_content_length)
    # Each image is an object or two; base64 has no braces. Counted before parsing, as a small
    # object costs a Python dict many times its text.
    if data.count(b"{") > 2 * settings.max_images_per_call + 2:
        raise TooManyImages(
            f"{data.count(b'{')} JSON objects: more images than MAX_IMAGES_PER_CALL allows"
        )
    # Whatever the Content-Type (its clients rarely say JSON).
    body = parse_json(data, settings.max_json_bytes, "the body")
    if not isinstance(body, dict):
        raise InvalidField(f"the body must be a JSON object with '{key}'")
    signature = body.get("signature_name", SIGNATURE)
    if signature not in (SIGNATURE, ""):
        raise InvalidField(f"no signature named {signature!r:.60}; this model has {SIGNATURE}")
    return body


def _classify(
    model: ModelSource, body: dict[str, Any], images: list[bytes], key: str
) -> list[Classification]:
    top_k = body.get("top_k", plane().settings.default_top_k)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= MAX_TOP_K:
        raise InvalidField(f"top_k must be an integer from 1 to {MAX_TOP_K}")
    results = plane().classify(images, model, top_k, forms.client(request))
    return every_image(results, key)


def _tensor_info(dtype: str, *sizes: int, name: str) -> dict[str, Any]:
    return {
        "dtype": dtype,
        "tensor_shape": {
            "dim": [{"size": str(s), "name": ""} for s in sizes],
            "unknown_rank": False,
        },
        "name": name,
    }


@bp.get("/<name>")
@bp.get("/<name>/versions/<version>")
@bp.get("/<name>/labels/<label>")
@auth.api
def status(name: str, version: str | None = None, label: str | None = None) -> tuple[Response, int]:
    """TF Serving's model_version_status, and KServe V1's `name` and `ready` beside it (its
    client reads `ready`, and 503 as not ready)."""
    ready = is_model_ready(_model(name, version, label))
    state, code = ("AVAILABLE", "OK") if ready else ("LOADING", "UNAVAILABLE")
    return jsonify(
        {
            "name": name,
            "ready": ready,
            "model_version_status": [
                {
                    "version": MODEL_VERSION,
                    "state": state,
                    "status": {"error_code": code, "error_message": ""},
                }
            ],
        }
    ), 200 if ready else 503


@bp.get("/<name>/metadata")
@bp.get("/<name>/versions/<version>/metadata")
@bp.get("/<name>/labels/<label>/metadata")
@auth.api
def metadata(name: str, version: str | None = None, label: str | None = None) -> Response:
    """GetModelMetadata's signature_def, as TF Serving writes it in JSON."""
    model = _model(name, version, label)
    signature = {
        "inputs": {"image_bytes": _tensor_info("DT_STRING", -1, name="image_bytes:0")},
        "outputs": {
            "probabilities": _tensor_info("DT_FLOAT", -1, model.classes, name="probabilities:0")
        },
        "method_name": "tensorflow/serving/predict",
    }
    return jsonify(
        {
            "model_spec": {"name": name, "signature_name": "", "version": MODEL_VERSION},
            "metadata": {"signature_def": {"signature_def": {SIGNATURE: signature}}},
        }
    )


@bp.post("/<name>:predict")
@bp.post("/<name>/versions/<version>:predict")
@bp.post("/<name>/labels/<label>:predict")
@auth.api
def predict(name: str, version: str | None = None, label: str | None = None) -> Response:
    """Row format {"instances": [{"b64": ...}, ...]} → {"predictions": [probabilities, ...]};
    columnar {"inputs": ...} → {"outputs": [probabilities, ...]}."""
    model = _model(name, version, label)
    body = _body("instances")
    if ("instances" in body) == ("inputs" in body):
        raise InvalidField("the body must have either 'instances' (rows) or 'inputs' (columns)")
    columnar = "inputs" in body
    images = _columnar(body) if columnar else _images(body, "instances")
    results = _classify(model, body, images, "inputs" if columnar else "instances")
    rows = [r.probabilities.round(6).tolist() for r in results]
    return jsonify({"outputs": rows} if columnar else {"predictions": rows})


@bp.post("/<name>:classify")
@bp.post("/<name>/versions/<version>:classify")
@bp.post("/<name>/labels/<label>:classify")
@auth.api
def classify(name: str, version: str | None = None, label: str | None = None) -> Response:
    """{"examples": [{"image": {"b64": ...}}, ...]} → {"results": [[[label, score], ...], ...]},
    the top `top_k` of each."""
    model = _model(name, version, label)
    body = _body("examples")
    results = _classify(model, body, _images(body, "examples"), "examples")
    return jsonify(
        {"results": [[[p.label, p.probability] for p in r.predictions] for r in results]}
    )


@bp.post("/<name>:regress")
@bp.post("/<name>/versions/<version>:regress")
@bp.post("/<name>/labels/<label>:regress")
@auth.api
def regress(name: str, version: str | None = None, label: str | None = None) -> Response:
    _model(name, version, label)
    raise InvalidField(
        f"model {name!r} is a classifier and has no regression signature: use :classify or :predict"
    )
