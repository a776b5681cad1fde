"""Reading the parts of an HTTP request that every endpoint shares: the image, an uploaded
model with its labels and options (tensors, normalisation, input size, preprocessing), the
model asked for, top_k, and who asks."""

from __future__ import annotations

import math

from flask import Request

from frontend.dataplane.manifest import Options
from frontend.dataplane.models import ModelSource, uploaded_model
from frontend.errors import InvalidField, MissingField
from frontend.http import plane
from frontend.preprocessing import profile
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


def images(request: Request) -> tuple[list[tuple[str, bytes]], bool]:
    """The images (name, bytes) in order, and whether the caller sent a list: parts named
    `images` (one or more), or more than one `image` part. One `image` part, or an image/*
    body, is one image."""
    listed = request.files.getlist("images")
    uploads = listed or request.files.getlist("image")
    if uploads:
        named = [(u.filename or f"image {i}", u.read()) for i, u in enumerate(uploads)]
        return named, bool(listed) or len(uploads) > 1
    return [("body", image_bytes(request, "image"))], False


def client(request: Request) -> str:
    """Who asks: the client's address, as the proxies trusted say it (TRUSTED_PROXY_HOPS)."""
    return request.remote_addr or ""


def model_upload(request: Request) -> ModelSource | None:
    """The uploaded model and labels (fields model_file, label_file) with their options, or
    None when no model is sent."""
    model = request.files.get("model_file")
    labels = request.files.get("label_file")
    if model is None or not model.filename:  # browsers send an empty part for "no file"
        if labels is not None and labels.filename:
            raise MissingField("a label_file was sent without a model_file")
        return None
    label_data = labels.read() if labels is not None and labels.filename else None
    return uploaded_model(model.filename or "uploaded", model.read(), label_data, options(request))


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


def _channels(request: Request, name: str) -> float | tuple[float, float, float] | None:
    """A number, or three (R, G, B) separated by commas."""
    raw = request.values.get(name)
    if raw in (None, ""):
        return None
    parts = raw.split(",")
    if len(parts) not in (1, 3):
        raise InvalidField(f"{name} must be one number or three (R,G,B), got {raw!r}")
    values = []
    for part in parts:
        try:
            value = float(part)
        except ValueError:
            raise InvalidField(f"{name} must be a number or three, got {raw!r}") from None
        if not math.isfinite(value):
            raise InvalidField(f"{name} must be finite, got {raw!r}")
        values.append(value)
    return values[0] if len(values) == 1 else (values[0], values[1], values[2])


def normalization(request: Request) -> Normalization:
    """The model's own default unless input_mean / input_std are given (as in TensorFlow's
    label_image; one number, or one per channel R,G,B); one given alone keeps the other at
    127.5."""
    mean, std = _channels(request, "input_mean"), _channels(request, "input_std")
    if mean is None and std is None:
        return Normalization()
    if std is not None and 0 in (std if isinstance(std, tuple) else (std,)):
        raise InvalidField("input_std must not be 0")
    return Normalization("mean_std", 127.5 if mean is None else mean, 127.5 if std is None else std)


MAX_INPUT_SIDE = 1024


def input_size(request: Request) -> tuple[int, int] | None:
    """`input_size`: the size to run a graph at that fixes none itself, as `160` or
    `160x128` (height x width); None when not given."""
    raw = request.values.get("input_size")
    if raw in (None, ""):
        return None
    parts = raw.lower().replace(" ", "").split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise InvalidField(f"input_size must be a size in pixels, 160 or 160x128, got {raw!r}")
    height, width = int(parts[0]), int(parts[-1])
    if not (1 <= height <= MAX_INPUT_SIDE and 1 <= width <= MAX_INPUT_SIDE):
        raise InvalidField(
            f"input_size must be between 1 and {MAX_INPUT_SIDE} pixels a side, got {raw!r}"
        )
    return height, width


def preprocessing(request: Request) -> str | None:
    """`preprocessing`: the profile to prepare photos with (frontend/preprocessing.py), checked
    at once; None when not given."""
    raw = request.values.get("preprocessing") or None
    return None if raw is None else profile(raw).name


def options(request: Request) -> Options:
    """A model's options as a registration or an upload gives them."""
    return Options(
        input_tensor=request.values.get("input_tensor") or None,
        output_tensor=request.values.get("output_tensor") or None,
        normalization=normalization(request),
        input_size=input_size(request),
        preprocessing=preprocessing(request),
    )


def requested_model(request: Request) -> ModelSource:
    """The model a classifying request asks for: an uploaded one (with its options), a
    registered one by `model` (id or name), or the default."""
    return plane().requested(model_upload(request), request.values.get("model"), client(request))
