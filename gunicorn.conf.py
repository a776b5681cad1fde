"""gunicorn settings for the frontend; each can be overridden by its environment variable."""

import math
import os
import tempfile

# Set in the environment too: the app shares the cores among this many processes' worker pools.
# One gunicorn process per 8 cores: its part of a request (about 4 ms of CPU for a 224 px JPEG)
# is an eighth of the model's (about 35 ms), so one process keeps 8 model workers busy. One pool
# per process also balances best: with two processes on 2 cores, each with one worker, the
# kernel's uneven sharing of connections left a worker idle while the other's queue grew
# (measured: 44 against 49 requests/s at concurrency 16).
os.environ.setdefault("WEB_CONCURRENCY", str(max(1, math.ceil((os.cpu_count() or 1) / 8))))

# Prometheus samples of every gunicorn process go to one folder that /metrics sums; a fresh one
# per server start, so counts do not carry over from a previous run.
metrics_folder_is_ours = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if metrics_folder_is_ours:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mobilenet-metrics-")

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8080')}")
workers = int(os.environ["WEB_CONCURRENCY"])
# Threads: a request mostly waits on a model worker, so one gunicorn process serves several.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# Above WORKER_TIMEOUT, so a slow model gets its JSON error rather than a killed connection.
timeout = int(float(os.environ.get("WORKER_TIMEOUT", "60"))) + 30
graceful_timeout = 30
accesslog = "-"


def _service(worker):
    """The app's service object; None when the app failed to load (gunicorn then has no wsgi)."""
    app = getattr(worker, "wsgi", None)
    return app.extensions.get("mobilenet") if app is not None else None


def post_worker_init(worker):
    """Start this process's model workers and load the default model before traffic comes."""
    service = _service(worker)
    if service is not None:
        service.warm_up()


def worker_exit(server, worker):
    service = _service(worker)
    if service is not None:
        service.transport.close()
