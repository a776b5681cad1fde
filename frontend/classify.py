"""One classification: prepare the image, frame it with the model, run a worker, label the
answer. The page, /infer and the JSON API all come through here."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from frontend.answers import Prediction, confidence_word, top_predictions
from frontend.images import prepare_image
from frontend.labels import Labels
from frontend.models import ModelSource
from protocol import Normalization, Request, RequestHeader
from supervisor.metrics import STAGE_LATENCY
from supervisor.transport import Transport


@dataclass(frozen=True)
class Classification:
    model: ModelSource
    labels: Labels
    predictions: list[Prediction]
    timings_ms: dict[str, float]

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


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 2)


def classify_image(
    image: bytes,
    model: ModelSource,
    transport: Transport,
    *,
    default_size: int,
    normalization: Normalization,
    top_k: int,
    max_pixels: int,
) -> Classification:
    """`normalization` overrides the model's own unless it is `model_default`."""
    started = time.perf_counter()
    height, width = model.input_size or (default_size, default_size)
    pixels = prepare_image(image, (height, width), max_pixels)
    prepared = time.perf_counter()
    header = RequestHeader(
        height=height,
        width=width,
        model_length=len(model.blob),
        input_tensor=model.input_tensor,
        output_tensor=model.output_tensor,
        model_sha256=model.sha256,
        normalization=model.normalization
        if normalization.mode == "model_default"
        else normalization,
    )
    request = Request(header, model.blob, memoryview(pixels).cast("B"))  # no copy
    rows, _ = transport.exchange(request, batchable=model.takes_batches)
    probabilities = rows[0]
    answered = time.perf_counter()
    labels = model.labels(len(probabilities))
    predictions = top_predictions(probabilities, labels, top_k)
    done = time.perf_counter()
    timings = {
        "decode": _ms(started, prepared),
        "worker": _ms(prepared, answered),
        "total": _ms(started, done),
    }
    for stage, milliseconds in timings.items():
        STAGE_LATENCY[stage].observe(milliseconds / 1000)
    return Classification(model, labels, predictions, timings)
