"""HTTP endpoints, one blueprint per area: the page, the JSON API, the model registry, health,
the Open Inference Protocol (v2) and TF Serving's REST API (tf_serving)."""

from __future__ import annotations

from flask import Response, jsonify

from protocol import ServiceError


def protocol_error(error: ServiceError) -> tuple[Response, int]:
    """The error body of the serving protocols (/v2, /v1/models): `error` is the message, as
    their clients read it; `code` says which kind, as in the JSON API."""
    return jsonify({"error": error.message, "code": error.code}), error.status
