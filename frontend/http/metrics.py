"""Prometheus metrics at /metrics: HTTP requests here, the supervisor's own in
supervisor/metrics.py. Under gunicorn every process writes its samples into
PROMETHEUS_MULTIPROC_DIR (set up by gunicorn.conf.py) and /metrics sums them all."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, generate_latest

from frontend.dataplane.statistics import registry

REQUESTS = Counter("mobilenet_requests_total", "HTTP requests", ["endpoint", "status"])

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(registry()), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

    counters: dict[tuple[str, int], Any] = {}  # labelled children, looked up once each

    @app.after_request
    def count(response: Response) -> Response:
        key = (request.url_rule.rule if request.url_rule else "unmatched", response.status_code)
        counter = counters.get(key)
        if counter is None:
            counter = counters[key] = REQUESTS.labels(key[0], str(key[1]))
        counter.inc()
        return response
