"""The HTTP side: one blueprint per area (the page, the JSON API, the model registry, health,
metrics, the OpenAPI document, the Open Inference Protocol and TF Serving's REST API), the
request parsing they share (forms, multipart bodies), tokens, browser security, and how errors
become answers. Every view parses the request, makes one call to the data plane
(frontend/dataplane), and encodes its answer."""

from __future__ import annotations

from flask import Flask, Response, current_app, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from frontend.answers import Classification
from frontend.dataplane import DataPlane
from frontend.dataplane.models import ModelSource
from frontend.errors import PayloadTooLarge
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


def error_response(error: ServiceError) -> tuple[Response, int]:
    """The JSON API's error body, `{"error": {"code", "message"}}`, with Retry-After or
    WWW-Authenticate where the error calls for one."""
    response = jsonify({"error": error.to_dict()})
    retry_after = getattr(error, "retry_after_seconds", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="mobilenet-service"'
    return response, error.status


def protocol_error(error: ServiceError) -> tuple[Response, int]:
    """The error body of the serving protocols (/v2, /v1/models): `error` is the message, as
    their clients read it; `code` says which kind, as in the JSON API."""
    return jsonify({"error": error.message, "code": error.code}), error.status


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
    def service_error(error: ServiceError) -> tuple[Response, int]:
        if error.status >= 500:
            app.logger.warning("%s: %s", error.code, error.message)
        return error_response(error)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> tuple[Response, int]:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return error_response(PayloadTooLarge(f"the request is over {limit} bytes"))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        body = {
            "code": (error.name or "error").lower().replace(" ", "_"),
            "message": error.description,
        }
        return jsonify({"error": body}), error.code or 500

    security.init_app(app)
    metrics.init_app(app)
    for area in (page, api, models, health, openapi, v2, tf_serving):
        app.register_blueprint(area.bp)
