"""gunicorn settings for the frontend, from the service's settings (frontend/settings.py)."""

import os
import tempfile

# Prometheus samples of every gunicorn process go to one folder that /metrics sums; a fresh one
# per server start, so counts do not carry over from a previous run. Set before anything of
# the app is imported: its metrics are made at import, in the mode this variable decides.
metrics_folder_is_ours = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if metrics_folder_is_ours:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="mobilenet-metrics-")

from frontend.scheduling import (  # noqa: E402
    set_malloc_arenas,
    set_malloc_thresholds,
    use_batch_policy,
)
from frontend.settings import load  # noqa: E402

settings = load()
# glibc gives each thread that allocates at once a memory arena of its own, up to 8 per core:
# 16 request threads then spread the same images over as many arenas, and the memory kept
# grew with every thread that first met a large image. Python runs one thread at a time; two
# arenas per core keep allocation uncontended (docs/performance.md). Inherited by the forks.
set_malloc_arenas(2 * (os.cpu_count() or 1))
# And a large decode's memory goes back when it is freed, whichever thread's heap it was in.
set_malloc_thresholds()
# Before gunicorn forks its processes and they start their threads: all inherit it.
use_batch_policy(settings.batch_scheduling)
# Set in the environment too: the app shares the cores among this many processes' worker pools.
# One gunicorn process per 2 cores: one process's Python runs on one core at a time, and its
# part of a request is a fraction of the model's, so it keeps two to four model workers busy
# (docs/performance.md).
os.environ["WEB_CONCURRENCY"] = str(settings.gunicorn_processes)

bind = settings.listen
workers = settings.gunicorn_processes
# Threads: a request mostly waits on a model worker, so one gunicorn process serves several.
worker_class = "gthread"
threads = settings.gunicorn_threads
# Above WORKER_TIMEOUT, so a slow model gets its JSON error rather than a killed connection.
timeout = int(settings.worker_timeout) + 30
graceful_timeout = 30
# Seconds an idle keep-alive connection stays open: gunicorn's 2 by default; behind our nginx
# (python -m frontend) longer than nginx's own, so that nginx is the one to close them.
keepalive = settings.gunicorn_keepalive
# Behind our nginx (python -m frontend) nginx writes the access log and gunicorn's is off:
# gunicorn's would cost CPU on every request.
accesslog = None if settings.access_log in ("", "off") else settings.access_log
# No `gunicornc` control socket: it would let any process of this user change the worker count
# or stop the server, and every instance on a machine would claim the same path in $HOME.
control_socket_disable = True


def _plane(worker):
    """The app's data plane; None when the app failed to load (gunicorn then has no wsgi)."""
    app = getattr(worker, "wsgi", None)
    return app.extensions.get("mobilenet") if app is not None else None


def post_worker_init(worker):
    """Start this process's model workers and load the default model before traffic comes."""
    plane = _plane(worker)
    if plane is not None:
        plane.warm_up()


def worker_exit(server, worker):
    plane = _plane(worker)
    if plane is not None:
        plane.close()
