"""The Flask frontend: upload page and HTTP API. It never imports TensorFlow; models run only
in worker processes. Build it with `create_app()` (gunicorn: `frontend:create_app()`)."""

from __future__ import annotations

from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.middleware.proxy_fix import ProxyFix

from frontend import metrics, security, service
from frontend.config import from_environment
from frontend.errors import PayloadTooLarge
from frontend.request import Request
from frontend.views import api, health, models, openapi, page, tf_serving, v2
from protocol import ServiceError
from supervisor.transport import Transport


def _error_response(error: ServiceError) -> tuple[Response, int]:
    response = jsonify({"error": error.to_dict()})
    retry_after = getattr(error, "retry_after_seconds", None)
    if retry_after is not None:
        response.headers["Retry-After"] = str(retry_after)
    if error.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="mobilenet-service"'
    return response, error.status


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ServiceError)
    def service_error(error: ServiceError) -> tuple[Response, int]:
        if error.status >= 500:
            app.logger.warning("%s: %s", error.code, error.message)
        return _error_response(error)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(error: RequestEntityTooLarge) -> tuple[Response, int]:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return _error_response(PayloadTooLarge(f"the request is over {limit} bytes"))

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> tuple[Response, int]:
        body = {
            "code": (error.name or "error").lower().replace(" ", "_"),
            "message": error.description,
        }
        return jsonify({"error": body}), error.code or 500


def create_app(
    test_config: dict[str, Any] | None = None, transport: Transport | None = None
) -> Flask:
    """`transport`: how models are run; by default the one WORKER_TRANSPORT names (tests give
    a fake, as gunicorn's tests give its arbiter a fake worker class)."""
    app = Flask(__name__)
    app.request_class = Request
    app.config.from_mapping(from_environment())
    if test_config:
        app.config.from_mapping(test_config)
    _register_error_handlers(app)
    security.init_app(app)
    service.init_app(app, transport)
    metrics.init_app(app)
    app.register_blueprint(page.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(models.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(v2.bp)
    app.register_blueprint(tf_serving.bp)
    hops = app.config["TRUSTED_PROXY_HOPS"]
    if hops:  # behind our own nginx (python -m frontend): the client is in X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app
