"""Each model's inference statistics: calls and images run, their time, and when the last ran,
as Triton's statistics extension reports them (/v2/models/{m}/stats). They are Prometheus
counters, so under gunicorn every process writes its own and a reader sums them all, as
/metrics does."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, multiprocess

IMAGES = Counter(
    "mobilenet_model_images_total", "Images run, by model id and outcome", ["model", "outcome"]
)
CALLS = Counter(
    "mobilenet_model_calls_total", "Calls that ran a model, by model id and outcome",
    ["model", "outcome"],
)  # fmt: skip
SECONDS = Counter(
    "mobilenet_model_seconds_total", "Time spent in calls of a model, by model id and outcome",
    ["model", "outcome"],
)  # fmt: skip
LAST_CALL = Gauge(
    "mobilenet_model_last_call_seconds", "Unix time at which a call of the model last ended",
    ["model"], multiprocess_mode="max",
)  # fmt: skip
OUTCOMES = ("success", "fail")


@dataclass
class Tally:
    images: int  # run and answered; a call that answers none failed


@contextmanager
def recorded(model_id: str | None, images: int) -> Iterator[Tally]:
    """Count a call of `images` images under the model's id (an upload used once has none and
    is not counted): a success unless it raises or the caller sets the tally's images to 0."""
    tally = Tally(images)
    if model_id is None:
        yield tally
        return
    started, outcome = time.perf_counter(), "fail"
    try:
        yield tally
        outcome = "success" if tally.images else "fail"
    finally:
        counted_images, calls, seconds, last = _children(model_id, outcome)
        counted_images.inc(tally.images if outcome == "success" else images)
        calls.inc()
        seconds.inc(time.perf_counter() - started)
        last.set(time.time())


_labelled: dict[tuple[str, str], tuple[Any, Any, Any, Any]] = {}


def _children(model_id: str, outcome: str) -> tuple[Any, Any, Any, Any]:
    """The model's labelled counters, looked up once (`labels()` takes a lock each time); one
    entry per model and outcome, as the store bounds the models."""
    key = (model_id, outcome)
    children = _labelled.get(key)
    if children is None:
        children = _labelled[key] = (
            IMAGES.labels(model_id, outcome),
            CALLS.labels(model_id, outcome),
            SECONDS.labels(model_id, outcome),
            LAST_CALL.labels(model_id),
        )
    return children


def registry() -> CollectorRegistry:
    """Every process's samples when PROMETHEUS_MULTIPROC_DIR is set (under gunicorn), else
    this process's."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    collected = CollectorRegistry()
    multiprocess.MultiProcessCollector(collected)
    return collected


def model_statistics(model_id: str) -> dict[str, dict[str, float]]:
    """{outcome: {"images", "calls", "seconds"}} and {"last": {"seconds"}} for one model."""
    wanted = {
        "mobilenet_model_images_total": "images",
        "mobilenet_model_calls_total": "calls",
        "mobilenet_model_seconds_total": "seconds",
    }
    found: dict[str, dict[str, float]] = {o: dict.fromkeys(wanted.values(), 0.0) for o in OUTCOMES}
    found["last"] = {"seconds": 0.0}
    for family in registry().collect():
        for sample in family.samples:
            if sample.labels.get("model") != model_id:
                continue
            if sample.name in wanted:
                found[sample.labels["outcome"]][wanted[sample.name]] += sample.value
            elif sample.name == "mobilenet_model_last_call_seconds":
                found["last"]["seconds"] = max(found["last"]["seconds"], sample.value)
    return found
