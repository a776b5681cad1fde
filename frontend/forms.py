"""Reading the parts of an HTTP request that every endpoint shares: the image, an uploaded
model with its labels, top_k and the input normalisation overrides."""

from __future__ import annotations

import math

from flask import Request

from frontend.errors import InvalidField, MissingField
from frontend.models import ModelSource, uploaded_model
from protocol import Normalization

MAX_TOP_K = 100


def image_bytes(request: Request, field: str) -> bytes:
    """The image from multipart field `field`, or the raw body when it is sent as image/*."""
    upload = request.files.get(field)
    if upload is not None:
        return upload.read()
    if request.mimetype.startswith("image/"):
        return request.get_data()
    raise MissingField(f"send the image as multipart field {field!r} or as an image/* body")


def model_upload(request: Request) -> ModelSource | None:
    """The uploaded model and labels (fields model_file, label_file), or None for the default."""
    model = request.files.get("model_file")
    labels = request.files.get("label_file")
    if model is None or not model.filename:  # browsers send an empty part for "no file"
        if labels is not None and labels.filename:
            raise MissingField("a label_file was sent without a model_file")
        return None
    label_data = labels.read() if labels is not None and labels.filename else None
    return uploaded_model(model.filename or "uploaded", model.read(), label_data)


def top_k(request: Request, default: int) -> int:
    raw = request.values.get("top_k")
    if raw in (None, ""):
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidField(f"top_k must be an integer, got {raw!r}") from None
    if not 1 <= value <= MAX_TOP_K:
        raise InvalidField(f"top_k must be between 1 and {MAX_TOP_K}, got {value}")
    return value


def _number(request: Request, name: str) -> float | None:
    raw = request.values.get(name)
    if raw in (None, ""):
        return None
    try:
        value = float(raw)
    except ValueError:
        raise InvalidField(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise InvalidField(f"{name} must be finite, got {raw!r}")
    return value


def normalization(request: Request) -> Normalization:
    """The model's own default unless input_mean / input_std are given (as in TensorFlow's
    label_image); one given alone keeps the other at 127.5."""
    mean, std = _number(request, "input_mean"), _number(request, "input_std")
    if mean is None and std is None:
        return Normalization()
    if std == 0:
        raise InvalidField("input_std must not be 0")
    return Normalization("mean_std", 127.5 if mean is None else mean, 127.5 if std is None else std)
