"""Running one request: find or load its model, shape its pixels, classify, describe.
Shared by one-shot mode and serve mode; only the answer encoding differs between them."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from protocol import ModelUnknown, Request
from worker.cache import ModelCache
from worker.description import describe, grey, input_size
from worker.runtimes import LoadedModel, RuntimeOptions, check_input_size, load_model


def _fits(model: LoadedModel, request: Request) -> bool:
    """A cached model serves a frame whose tensor names are unset or the ones it resolved."""
    header = request.header
    return header.input_tensor in (None, model.input_name) and header.output_tensor in (
        None,
        model.output_name,
    )


def _model_for(request: Request, options: RuntimeOptions, cache: ModelCache | None) -> LoadedModel:
    header = request.header
    by_reference = header.model_length == 0 and header.model_sha256 is not None
    sha256 = header.model_sha256 or (
        hashlib.sha256(request.model).hexdigest() if cache is not None else ""
    )
    cached = cache.get(sha256) if cache is not None else None
    if cached is not None and _fits(cached, request):
        return cached
    if by_reference:
        raise ModelUnknown(f"this worker does not hold model {sha256} with those tensors")
    model = load_model(
        request.model, header.model_format, header.input_tensor, header.output_tensor, options
    )
    if cache is not None:
        cache.keep(sha256, model, len(request.model))
        converted = getattr(model, "converted", None)
        if converted is not None:  # later frames send what a registration stores: this
            cache.keep(hashlib.sha256(converted).hexdigest(), model, len(converted))
    return model


def execute(
    request: Request, options: RuntimeOptions, cache: ModelCache | None = None
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Probability rows, float32 [images, classes], and the model's description when the frame
    asked."""
    header = request.header
    model = _model_for(request, options, cache)
    if header.image_count == 0:  # a describe request: probe with uniform grey at the model's size
        size, size_source = input_size(model, header.probe_size, header.normalization)
        pixels = grey(size)
    else:
        check_input_size(model, header.height, header.width)
        size, size_source = (header.height, header.width), "graph" if model.input_size else "frame"
        pixels = np.frombuffer(request.pixels, dtype=np.uint8).reshape(
            header.image_count, header.height, header.width, header.channels
        )
    rows = model.classify(pixels, header.normalization, solo=header.solo)
    if not header.describe:
        return rows, None
    return rows, describe(model, header.normalization, rows.shape[1], size, size_source)
