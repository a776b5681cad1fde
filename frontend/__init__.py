"""The Flask frontend: upload page and HTTP API. It never imports TensorFlow; models run only
in worker processes. Build it with `create_app()` (gunicorn: `frontend:create_app()`).

    frontend/http/       the views: parse, one call to the data plane, encode
    frontend/dataplane/  the catalog, admission, the runner (frames to workers), preparation
    frontend/            images, preprocessing, labels, answers, explanations, the store
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask

    from supervisor.transport import Transport


def create_app(
    test_config: dict[str, Any] | None = None, transport: Transport | None = None
) -> Flask:
    """`test_config`: settings by variable name over the environment's. `transport`: how
    models run; by default the one WORKER_TRANSPORT names (tests give a fake, as gunicorn's
    tests give its arbiter a fake worker class)."""
    # Here, not at the top: importing one module of the package (frontend.images, say) does
    # not build the web app's imports.
    from flask import Flask
    from werkzeug.middleware.proxy_fix import ProxyFix

    from frontend import http
    from frontend.dataplane import DataPlane
    from frontend.dataplane.runner import transport_for
    from frontend.http.request import Request
    from frontend.images import set_large_decodes
    from frontend.settings import Settings, load
    from supervisor import tracing

    app = Flask(__name__)
    app.request_class = Request
    settings: Settings = load(overrides=test_config)
    app.config.update(test_config or {})
    app.config.update(MAX_CONTENT_LENGTH=settings.max_content_length, SETTINGS=settings)
    set_large_decodes(settings.large_decodes)
    app.extensions["mobilenet"] = DataPlane(
        settings,
        transport or transport_for(settings, settings.worker_transport, settings.worker_address),
    )
    http.init_app(app)
    if tracing.configure(settings):  # a server span per request, honouring a `traceparent`
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor().instrument_app(app, excluded_urls="healthz,readyz,metrics")
    if settings.trusted_proxy_hops:  # behind our own nginx: the client is in X-Forwarded-For
        hops = settings.trusted_proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    return app
