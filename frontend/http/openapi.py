"""GET /openapi.json: the API description (frontend/http/openapi_document.py)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from frontend.http.openapi_document import DOCUMENT

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(DOCUMENT)
