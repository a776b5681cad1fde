"""Prometheus metrics at /metrics. Under gunicorn every process writes its samples into
PROMETHEUS_MULTIPROC_DIR (set up by gunicorn.conf.py) and /metrics sums them all."""

from __future__ import annotations

import os

from flask import Blueprint, Flask, Response, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

REQUESTS = Counter("mobilenet_requests_total", "HTTP requests", ["endpoint", "status"])
LATENCY = Histogram(
    "mobilenet_latency_seconds",
    "Time per classification stage: decode, queue (waiting for a worker), worker, total",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WORKER_RESTARTS = Counter("mobilenet_worker_restarts_total", "Model workers reaped and replaced")
MODEL_CACHE = Counter(
    "mobilenet_model_cache_total",
    "Frames that named a model a worker held (hit) or had to carry its bytes (miss)",
    ["result"],
)
BATCH_SIZE = Histogram(
    "mobilenet_batch_size",
    "Images per frame sent by dynamic batching (BATCH_MAX_SIZE > 1)",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
QUEUE_DEPTH = Gauge(
    "mobilenet_queue_depth", "Requests waiting for a model worker", multiprocess_mode="livesum"
)

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
    return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)

    @app.after_request
    def count(response: Response) -> Response:
        endpoint = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(endpoint, str(response.status_code)).inc()
        return response
