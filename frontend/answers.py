"""Turning probabilities into answers: top-k predictions and the confidence word."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from frontend.labels import Labels

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
    # The classes at or above the k-th highest value, then only those sorted: a full stable
    # sort of 1001 values costs more than the rest of this function.
    kth = np.partition(values, len(values) - k)[len(values) - k]
    candidates = np.flatnonzero(values >= kth)
    order = candidates[np.argsort(-values[candidates], kind="stable")[:k]]
    return [Prediction(labels[int(i)], int(i), round(float(values[i]), 6)) for i in order]
