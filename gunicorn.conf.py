"""gunicorn settings for the frontend; each can be overridden by its environment variable."""

import os

bind = os.environ.get("BIND", f"0.0.0.0:{os.environ.get('PORT', '8080')}")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads: a request mostly waits on its worker process, so one gunicorn process serves several.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# Above WORKER_TIMEOUT, so a slow model gets its JSON error rather than a killed connection.
timeout = int(float(os.environ.get("WORKER_TIMEOUT", "60"))) + 30
graceful_timeout = 30
accesslog = "-"
