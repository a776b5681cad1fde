"""GET /openapi.json: the API description (frontend/openapi.py)."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from frontend.openapi import DOCUMENT

bp = Blueprint("openapi", __name__)


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(DOCUMENT)
