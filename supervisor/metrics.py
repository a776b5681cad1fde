"""Prometheus metrics of the supervisor: queueing, model caching, restarts, batching and the
worker service's replicas. The frontend exposes them at /metrics with its own."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY = Histogram(
    "mobilenet_latency_seconds",
    "Time per classification stage: decode, queue (waiting for a worker), worker, total",
    ["stage"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
# The labelled children used on every request, looked up once (`labels()` takes a lock).
STAGE_LATENCY = {stage: LATENCY.labels(stage) for stage in ("decode", "queue", "worker", "total")}
WORKER_RESTARTS = Counter("mobilenet_worker_restarts_total", "Model workers reaped and replaced")
MODEL_CACHE = Counter(
    "mobilenet_model_cache_total",
    "Frames that named a model a worker held (hit) or had to carry its bytes (miss)",
    ["result"],
)
CACHE_HIT, CACHE_MISS = MODEL_CACHE.labels("hit"), MODEL_CACHE.labels("miss")
BATCH_SIZE = Histogram(
    "mobilenet_batch_size",
    "Images per frame sent by dynamic batching (BATCH_MAX_SIZE > 1)",
    buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
)
WARM_MODELS = Gauge(
    "mobilenet_warm_workers",
    "Upload-lane workers holding a model (registered or uploaded), summed over processes",
    multiprocess_mode="livesum",
)
UPLOAD_MEMORY = Gauge(
    "mobilenet_upload_memory_bytes",
    "Anonymous memory of the upload lane's workers, spares included, as last measured "
    "(UPLOAD_MEMORY_MB bounds it)",
    multiprocess_mode="livesum",
)
QUEUE_DEPTH = Gauge(
    "mobilenet_queue_depth",
    "Requests waiting for a model worker, per lane: `default` (the default model's workers) "
    "and `upload` (registered and uploaded models); what an autoscaler watches",
    ["lane"],
    multiprocess_mode="livesum",
)
DEFAULT_QUEUE, UPLOAD_QUEUE = QUEUE_DEPTH.labels("default"), QUEUE_DEPTH.labels("upload")
REPLICA_FRAMES = Counter(
    "mobilenet_worker_service_frames_total",
    "Frames sent to each replica of the worker service (WORKER_TRANSPORT=tcp), by outcome",
    ["replica", "outcome"],
)
