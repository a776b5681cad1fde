"""gunicorn settings for the frontend; each can be overridden by its environment variable."""

import math
import os
import tempfile

# Set in the environment too: the app shares the cores among this many processes' worker pools.
# One gunicorn process per 2 cores. Its part of a 224 px request is about a fifth of the
# model's (measured on an Intel Xeon with AMX, 2 vCPUs, 2026-12-06: 1.34-1.41 ms of CPU against
# 6.5 ms for the quantized MobileNet; bench.cpu_split), and one process's Python runs on one core
# at a time, so it keeps two to four model workers busy. Within that, one pool per process
# balances best; 2 processes of 1 worker each measured no better.
os.environ.setdefault("WEB_CONCURRENCY", str(max(1, math.ceil((os.cpu_count() or 1) / 2))))

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
# Seconds an idle keep-alive connection stays open: gunicorn's 2 by default; behind our nginx
# (python -m frontend) longer than nginx's own, so that nginx is the one to close them.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "2"))
# ACCESS_LOG: a path, "-" for stdout (the default) or "off". Behind our nginx (python -m frontend)
# nginx writes it and gunicorn's is off: gunicorn's costs about 0.2 ms of CPU per request.
access_log = os.environ.get("ACCESS_LOG", "-")
accesslog = None if access_log in ("", "off") else access_log


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
