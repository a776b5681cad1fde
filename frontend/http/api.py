"""The JSON API under /api/v1."""

from __future__ import annotations

import time

import numpy as np
from flask import Blueprint, Response, jsonify, request

from frontend.errors import InvalidField
from frontend.explain import DEFAULT_GRID, MAX_GRID, MIN_GRID, data_url, overlay_png
from frontend.http import auth, classify_one, forms, plane
from protocol import ServiceError

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.post("/classify")
@auth.api
def classify() -> Response:
    """One `image` part: its answer. Several, or `images` parts: {"results": [...]}, one entry
    per image in order, each an answer or {"error": ...} for an image that could not be read."""
    images, listed = forms.images(request)
    model, client = forms.requested_model(request), forms.client(request)
    top_k, normalization = (
        forms.top_k(request, plane().settings.default_top_k),
        forms.normalization(request),
    )
    if not listed:
        return jsonify(classify_one(images[0][1], model, top_k, client, normalization).to_dict())
    results = plane().classify([data for _, data in images], model, top_k, client, normalization)
    entries = []
    for (name, _), result in zip(images, results, strict=True):
        if isinstance(result, ServiceError):
            entries.append({"image": name, "error": result.to_dict()})
        else:
            entries.append({"image": name, **result.to_dict()})
    return jsonify({"results": entries})


def _grid(raw: str | None) -> int:
    if raw in (None, ""):
        return DEFAULT_GRID
    if not raw.isdigit() or not MIN_GRID <= int(raw) <= MAX_GRID:
        raise InvalidField(
            f"grid must be a whole number from {MIN_GRID} to {MAX_GRID}, got {raw!r}"
        )
    return int(raw)


@bp.post("/explain")
@auth.api
def explain() -> Response:
    """Why this label: the occlusion map of `label` (default: the top label) as a grid of how
    far its probability falls with each region hidden, the strongest region, and the photo
    with the regions that mattered in red (a PNG; `format=png` answers the PNG alone)."""
    started = time.perf_counter()
    model = forms.requested_model(request)
    found, pixels, labels = plane().explain(
        forms.image_bytes(request, "image"),
        model,
        request.values.get("label") or None,
        _grid(request.values.get("grid")),
        forms.client(request),
        forms.normalization(request),
    )
    png = overlay_png(pixels, found.heat)
    if request.values.get("format") == "png":
        return Response(png, mimetype="image/png")
    rows, columns = found.grid.shape
    return jsonify(
        {
            "model": model.describe(),
            "label": {
                "label": labels[found.index],
                "index": found.index,
                "probability": round(found.probability, 6),
            },
            "grid": np.round(found.grid, 6).tolist(),
            "boxes": found.boxes,
            "strongest": found.strongest(),
            "classifications": 1 + rows * columns,
            "overlay_png": data_url(png),
            "timings_ms": {"total": round((time.perf_counter() - started) * 1000, 2)},
        }
    )
