"""The JSON API under /api/v1."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from frontend import auth, forms
from frontend.service import get_service

bp = Blueprint("api", __name__, url_prefix="/api/v1")


@bp.post("/classify")
@auth.api
def classify() -> Response:
    service = get_service()
    result = service.classify(
        forms.image_bytes(request, "image"),
        service.resolve(
            forms.model_upload(request),
            request.values.get("model"),
            forms.normalization(request),
            forms.input_size(request),
            client=request.remote_addr or "",
        ),
        forms.normalization(request),
        forms.top_k(request, service.config["DEFAULT_TOP_K"]),
        client=request.remote_addr or "",
    )
    return jsonify(result.to_dict())
