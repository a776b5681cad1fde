"""Turning probabilities into answers: top-k predictions, the confidence word, and a
classification as every route answers it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from frontend.labels import Labels
from protocol import ServiceError

if TYPE_CHECKING:
    from frontend.dataplane.models import ModelSource

# The seed's thresholds: strictly above each bound.
CONFIDENCE_WORDS = ((0.75, "very high"), (0.5, "high"), (0.2, "medium"))


@dataclass(frozen=True)
class Prediction:
    label: str
    index: int
    probability: float

    def to_dict(self) -> dict[str, object]:
        return {"label": self.label, "index": self.index, "probability": self.probability}


def confidence_word(probability: float) -> str:
    for bound, word in CONFIDENCE_WORDS:
        if probability > bound:
            return word
    return "low"


def top_predictions(probabilities: Sequence[float], labels: Labels, k: int) -> list[Prediction]:
    """The k most probable classes, highest first; equal probabilities in class order."""
    values = np.asarray(probabilities, dtype=np.float64)
    k = min(k, len(values))
    # A stable sort of them all: np.partition is slower on the many equal values (zeros) of
    # a quantized model's output.
    order = np.argsort(-values, kind="stable")[:k]
    return [Prediction(labels[int(i)], int(i), round(float(values[i]), 6)) for i in order]


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


Result = Classification | ServiceError  # an image that could not be read fails alone


def every_image(results: list[Result], where: str) -> list[Classification]:
    """The results of a protocol with no error per image (the Open Inference Protocol, TF
    Serving's): the first image that failed fails the call, named as `where`[index]."""
    for index, result in enumerate(results):
        if isinstance(result, ServiceError):
            result.message = f"{where}[{index}]: {result.message}"
            result.args = (result.message,)
            raise result
    return results  # type: ignore[return-value]
