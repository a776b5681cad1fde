"""Prometheus metrics summed over gunicorn's processes: requests by endpoint and status, stage
latencies, model cache hits and misses, queue depth and worker restarts."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import requests
from helpers import IMAGES, start_gunicorn
from prometheus_client.parser import text_string_to_metric_families

CAT = (IMAGES / "cat.jpg").read_bytes()


def samples(url: str) -> dict[tuple[str, tuple], float]:
    text = requests.get(url + "/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_metrics_count_what_happened(tmp_path: Path, model_workers, wait_for) -> None:
    server = start_gunicorn(tmp_path, {"WEB_CONCURRENCY": "2"})
    try:
        wait_for(lambda: len(model_workers(server, trusted_only=True)) == 2)
        for _ in range(6):
            response = requests.post(
                server.url + "/api/v1/classify", files={"image": CAT}, timeout=60
            )
            assert response.status_code == 200
        for _ in range(2):
            bad = requests.post(server.url + "/api/v1/classify", files={"image": b"x"}, timeout=60)
            assert bad.status_code == 400
        values = samples(server.url)
        requests_total = "mobilenet_requests_total"
        assert values[(requests_total, (("endpoint", "/api/v1/classify"), ("status", "200")))] == 6
        assert values[(requests_total, (("endpoint", "/api/v1/classify"), ("status", "400")))] == 2
        for stage in ("decode", "worker", "total", "queue"):
            assert values[("mobilenet_latency_seconds_count", (("stage", stage),))] >= 6
        # Each worker gets the default model's bytes once (warm-up or first use), then hits.
        hits = values[("mobilenet_model_cache_total", (("result", "hit"),))]
        misses = values[("mobilenet_model_cache_total", (("result", "miss"),))]
        assert hits + misses >= 6 and misses <= 2 and hits >= 4, (hits, misses)
        for lane in ("default", "upload"):
            assert values[("mobilenet_queue_depth", (("lane", lane),))] == 0

        # An idle worker killed: the pool's watcher reaps and replaces it without any request.
        victim = model_workers(server, trusted_only=True)[0]
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: samples(server.url).get(("mobilenet_worker_restarts_total", ())) == 1)
        wait_for(
            lambda: (
                len(model_workers(server, trusted_only=True)) == 2
                and victim not in model_workers(server, trusted_only=True)
            ),
            describe=lambda: (
                f"victim {victim}, workers {model_workers(server, trusted_only=True)}, server log: "
                + server.log.read_text()[-3000:]
            ),
        )
    finally:
        server.stop()
