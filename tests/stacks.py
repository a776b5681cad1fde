"""Helpers for the tests of running stacks (docker compose, Docker Swarm): waiting, classifying
through the published port, reading the frontend's metrics, reporting a measurement."""

from __future__ import annotations

import time

import pytest
import requests
from helpers import IMAGES
from prometheus_client.parser import text_string_to_metric_families


def ready(url: str) -> bool:
    try:
        return requests.get(url + "/readyz", timeout=15).status_code == 200
    except requests.RequestException:
        return False


def wait_until(condition, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {seconds:g} s"
        time.sleep(1)


def classify(url: str, photo: str, model_id: str | None = None) -> requests.Response:
    path = f"/api/v1/models/{model_id}/classify" if model_id else "/api/v1/classify"
    return requests.post(url + path, files={"image": (IMAGES / photo).read_bytes()}, timeout=60)


def report(capsys: pytest.CaptureFixture, line: str) -> None:
    """A measurement, printed past pytest's capture."""
    with capsys.disabled():
        print(f"\n{line}", flush=True)


def replica_frames(url: str) -> dict[str, float]:
    text = requests.get(url + "/metrics", timeout=10).text
    return {
        sample.labels["replica"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "mobilenet_worker_service_frames_total"
        and sample.labels.get("outcome") == "answered"
    }
