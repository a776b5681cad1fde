"""The HTTP side: one blueprint per area (the page, the JSON API, the model registry, health,
metrics, the OpenAPI document, the Open Inference Protocol and TF Serving's REST API), the
request parsing they share (forms, multipart bodies), tokens, browser security, and how errors
become answers. Every view parses the request, makes one call to the data plane
(frontend/dataplane), and encodes its answer."""

from __future__ import annotations

import flask
from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from frontend.answers import Classification
from frontend.dataplane import DataPlane
from frontend.dataplane.models import ModelSource
from frontend.errors import PayloadTooLarge, RouteError
from protocol import Normalization, ServiceError


def plane() -> DataPlane:
    """The app's data plane (frontend/__init__.py makes it)."""
    return current_app.extensions["mobilenet"]


def classify_one(
    image: bytes,
    model: ModelSource,
    top_k: int,
    client: str,
    normalization: Normalization | None = None,
) -> Classification:
    """One image's classification; an image that cannot be read fails the request."""
    (result,) = plane().classify([image], model, top_k, client, normalization)
    if isinstance(result, ServiceError):
        raise result
    return result


# The serving protocols' routes: their clients read an error as {"error": "<message>"}.
SERVING_PROTOCOLS = ("/v2", "/v1/models")


def speaks_serving_protocol(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in SERVING_PROTOCOLS)


def error_response(error: ServiceError, headers: dict[str, str] | None = None) -> Response:
    """An error's answer, with Retry-After or WWW-Authenticate where the error calls for one.
    The JSON API's body is `{"error": {"code", "message"}}`; under the serving protocols (/v2,
    /v1/models) it is `{"error": message, "code": code}`, as their clients read it."""
    # (flask.request: `request` here is the submodule frontend/http/request.py)
    if speaks_serving_protocol(flask.request.path):
        response = jsonify({"error": error.message, "code": error.code})
    else:
        response = jsonify({"error": error.to_dict()})
    response.status_code = error.status
    response.headers.update(headers or {})
    retry_after = getattr(error, "retry_after_seconds", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="mobilenet-service"'
    return response


def init_app(app: Flask) -> None:
    from frontend.http import (
        api,
        health,
        metrics,
        models,
        openapi,
        page,
        security,
        tf_serving,
        v2,
    )

    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError) -> Response:
        if error.status >= 500:
            app.logger.warning("%s: %s", error.code, error.message)
        return error_response(error)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return error_response(PayloadTooLarge(f"the request is over {limit} bytes"))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        kept = {k: v for k, v in error.get_headers() if k.lower() != "content-type"}  # Allow
        return error_response(RouteError(error), kept)

    security.init_app(app)
    metrics.init_app(app)
    for area in (page, api, models, health, openapi, v2, tf_serving):
        app.register_blueprint(area.bp)
