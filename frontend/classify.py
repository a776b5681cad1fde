"""Classification: prepare the images, frame them with the model, run a worker, label the
answer. The page, the JSON API, the Open Inference Protocol, the explanations and the CLI all
come through here."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from frontend.answers import Prediction, confidence_word, top_predictions
from frontend.images import prepare_image
from frontend.labels import Labels
from frontend.models import ModelSource
from protocol import Normalization, Request, RequestHeader, ServiceError
from supervisor.metrics import STAGE_LATENCY
from supervisor.transport import Transport

T = TypeVar("T")


@dataclass(frozen=True)
class Classification:
    model: ModelSource
    labels: Labels
    predictions: list[Prediction]
    timings_ms: dict[str, float]
    probabilities: np.ndarray  # every class's, in the model's order

    @property
    def confidence(self) -> str:
        return confidence_word(self.predictions[0].probability)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": {**self.model.describe(), "classes": len(self.labels.names)},
            "labels": {"alignment": self.labels.alignment, "note": self.labels.note},
            "predictions": [p.to_dict() for p in self.predictions],
            "confidence": self.confidence,
            "timings_ms": self.timings_ms,
        }


@dataclass(frozen=True)
class ImageOptions:
    """How images are prepared and answered: the side for a model that has no size of its own
    (INPUT_SIZE), a normalisation that overrides the model's unless it is `model_default`, how
    many predictions, and the most pixels an image may have (MAX_IMAGE_PIXELS)."""

    default_size: int
    normalization: Normalization
    top_k: int
    max_pixels: int


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 2)


def run_model(
    pixels: np.ndarray,
    model: ModelSource,
    transport: Transport,
    normalization: Normalization,
) -> np.ndarray:
    """Probability rows for prepared pixels [n, h, w, 3] (uint8): one frame, one worker.
    `normalization` overrides the model's own unless it is `model_default`."""
    count, height, width, _ = pixels.shape
    header = RequestHeader(
        height=height,
        width=width,
        image_count=count,
        model_length=len(model.blob),
        input_tensor=model.input_tensor,
        output_tensor=model.output_tensor,
        model_sha256=model.sha256,
        normalization=model.normalization
        if normalization.mode == "model_default"
        else normalization,
    )
    pixel_bytes = memoryview(np.ascontiguousarray(pixels)).cast("B")  # no copy
    rows, _ = transport.exchange(
        Request(header, model.blob, pixel_bytes), batchable=model.takes_batches and count == 1
    )
    return rows


def run_side_by_side(
    pixels: np.ndarray,
    model: ModelSource,
    transport: Transport,
    normalization: Normalization,
    executor: Executor | None = None,
    parts: int = 1,
) -> np.ndarray:
    """run_model on `parts` runs of neighbouring images at the same time, one frame each."""
    rows = _side_by_side(run_model, pixels, executor, parts, model, transport, normalization)
    return rows[0] if len(rows) == 1 else np.concatenate(rows)


def classify_pixels(
    pixels: np.ndarray,
    model: ModelSource,
    transport: Transport,
    *,
    normalization: Normalization,
    top_k: int,
    executor: Executor | None = None,
    parts: int = 1,
) -> list[Classification]:
    """Images already prepared at the model's size: [n, h, w, 3] uint8."""
    started = time.perf_counter()
    rows = run_side_by_side(pixels, model, transport, normalization, executor, parts)
    worker_ms = _ms(started, time.perf_counter())
    STAGE_LATENCY["worker"].observe(worker_ms / 1000)
    labels = model.labels(rows.shape[1])
    timings = {"decode": 0.0, "worker": worker_ms, "total": worker_ms}
    return [
        Classification(model, labels, top_predictions(row, labels, top_k), dict(timings), row)
        for row in rows
    ]


def classify_images(
    images: Sequence[bytes],
    model: ModelSource,
    transport: Transport,
    options: ImageOptions,
    executor: Executor | None = None,
    parts: int = 1,
) -> list[Classification | ServiceError]:
    """One result per image, in order; an image that does not decode gets its own error and
    fails only its own entry. The images are cut into `parts` runs of neighbours, each decoded
    and sent as one frame on `executor` at the same time, so that one call with many images
    keeps as many workers busy as many calls would."""
    runs = _side_by_side(_classify_run, images, executor, parts, model, transport, options)
    return [result for run in runs for result in run]


def _side_by_side(
    work: Callable[..., T], items: Any, executor: Executor | None, parts: int, *args: Any
) -> list[T]:
    """`work(run, *args)` on `parts` runs of neighbouring items (a list, or an array along its
    first axis), on `executor` at the same time; the answers in the order of the runs."""
    parts = max(1, min(parts, len(items))) if executor is not None else 1
    size = -(-len(items) // parts)  # ceiling
    runs = [items[i : i + size] for i in range(0, len(items), size)] or [items]
    if len(runs) == 1:
        return [work(runs[0], *args)]
    assert executor is not None
    futures = [executor.submit(work, run, *args) for run in runs]
    return [future.result() for future in futures]


def _classify_run(
    images: Sequence[bytes], model: ModelSource, transport: Transport, options: ImageOptions
) -> list[Classification | ServiceError]:
    """The images that decode, in one frame."""
    started = time.perf_counter()
    size, max_pixels, top_k = model.size(options.default_size), options.max_pixels, options.top_k
    prepared: list[np.ndarray | ServiceError] = []
    decode_ms = []
    for image in images:
        begun = time.perf_counter()
        try:
            prepared.append(prepare_image(image, size, max_pixels, model.profile))
        except ServiceError as exc:
            prepared.append(exc)
        decode_ms.append(_ms(begun, time.perf_counter()))
    good = [p for p in prepared if isinstance(p, np.ndarray)]
    results: list[Classification | ServiceError] = []
    if good:
        before = time.perf_counter()
        pixels = good[0][np.newaxis] if len(good) == 1 else np.stack(good)
        rows = run_model(pixels, model, transport, options.normalization)
        answered = time.perf_counter()
        worker_ms = _ms(before, answered)
        STAGE_LATENCY["worker"].observe(worker_ms / 1000)
    labels = model.labels(rows.shape[1]) if good else None
    row = 0
    for item, decoded in zip(prepared, decode_ms, strict=True):
        if not isinstance(item, np.ndarray):
            results.append(item)
            continue
        STAGE_LATENCY["decode"].observe(decoded / 1000)
        done = time.perf_counter()
        timings = {"decode": decoded, "worker": worker_ms, "total": _ms(started, done)}
        assert labels is not None
        predictions = top_predictions(rows[row], labels, top_k)
        results.append(Classification(model, labels, predictions, timings, rows[row]))
        STAGE_LATENCY["total"].observe(timings["total"] / 1000)
        row += 1
    return results


def classify_image(
    image: bytes, model: ModelSource, transport: Transport, options: ImageOptions
) -> Classification:
    (result,) = classify_images([image], model, transport, options)
    if isinstance(result, ServiceError):
        raise result
    return result


def every_image(results: list[Classification | ServiceError], where: str) -> list[Classification]:
    """The results of a protocol with no error per image (the Open Inference Protocol, TF
    Serving's): the first image that failed fails the call, named as `where`[index]."""
    for index, result in enumerate(results):
        if isinstance(result, ServiceError):
            result.message = f"{where}[{index}]: {result.message}"
            result.args = (result.message,)
            raise result
    return results  # type: ignore[return-value]
