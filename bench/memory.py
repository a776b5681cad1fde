"""Memory over a long run: the resident memory of gunicorn and its model workers after the first
500 and after the last 500 of 5,000 requests. A leak shows as growth between the two."""

from __future__ import annotations

from pathlib import Path

from bench.loadgen import multipart_body, run_ab
from bench.setup import MODELS
from tools.server import Server, start_gunicorn, tree_rss_mib, wait_until_idle


def measure_memory(folder: Path, image: Path, total: int = 5000, window: int = 500) -> dict:
    server: Server = start_gunicorn(folder, MODELS)
    wait_until_idle(server)  # the spares' runtime imports are not a leak
    try:
        body, content_type = multipart_body(folder, {}, image)
        url = server.url + "/api/v1/classify"
        run_ab(url, body, content_type, window, 4)
        first = tree_rss_mib(server.process.pid)
        run_ab(url, body, content_type, total - 2 * window, 4)
        run_ab(url, body, content_type, window, 4)
        last = tree_rss_mib(server.process.pid)
    finally:
        server.stop()
    return {
        "requests": total,
        "rss_after_first_mib": round(first, 1),
        "rss_after_last_mib": round(last, 1),
        "change": round(last / first - 1, 4),
    }
