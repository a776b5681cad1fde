"""Finding the input range a float model expects, when neither the model nor the user says it:
the model runs on a few natural photos (frontend/calibration) under each candidate range, and
each candidate is scored by how confident its predictions are, less how much they move when
the photos move by two pixels or take a little noise. A model fed the range it was trained on
sees photos it knows: it answers with conviction, and steadily. Fed another, it hedges (colours
washed out), or it saturates and answers with conviction about nothing: then a two-pixel shift
changes its mind, or every photo gets the same class.

The unit-scale ranges ([-1, 1], [0, 1]) are what MobileNet-style classifiers are trained on;
[-1, 1] is kept unless [0, 1] scores higher by MARGIN. The pixel-scale ranges (raw 0-255,
Caffe's per-channel means) put a hundred times more into the first layer, which makes models
trained otherwise overconfident about anything; so they are tried only when the unit-scale
choice looks unseen by the model (little confidence, or one class for every photo, as a model
trained on pixel values answers a hundredth of its range), and one is chosen if it scores
higher by MARGIN and does not give all the photos one class. All scores go into the manifest.
Quantized models need none of this (their input's scale and zero point say it), and an
explicit `input_mean` / `input_std` always wins."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from frontend.images import prepare_image
from frontend.models import ModelSource
from protocol import ModelFailed, Normalization, Request, RequestHeader
from supervisor.transport import Transport

PHOTOS = Path(__file__).resolve().parent / "calibration"
UNIT_SCALE: dict[str, Normalization] = {
    "[-1, 1]": Normalization("mean_std", 127.5, 127.5),  # MobileNet, Inception, Teachable Machine
    "[0, 1]": Normalization("mean_std", 0.0, 255.0),  # TF-Hub image modules
}
PIXEL_SCALE: dict[str, Normalization] = {
    "[0, 255]": Normalization("raw"),
    "Caffe means": Normalization("mean_std", (123.68, 116.779, 103.939), 1.0),  # VGG, ResNet
}
CANDIDATES = {**UNIT_SCALE, **PIXEL_SCALE}
FALLBACK = "[-1, 1]"
MARGIN = 0.05
ALIVE = 0.3  # mean top probability under which a unit-scale range looks unseen by the model


@cache
def calibration_pixels(size: tuple[int, int]) -> np.ndarray:
    """The photos prepared at `size`, then each shifted two pixels to the right, then each with
    a little noise (a fixed seed): uint8 [3 x photos, height, width, 3]."""
    photos = np.stack([prepare_image(p.read_bytes(), size) for p in sorted(PHOTOS.glob("*.jpg"))])
    shifted = np.roll(photos, 2, axis=2)
    noise = np.random.default_rng(0).integers(-6, 7, photos.shape)
    noisy = np.clip(photos.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return np.concatenate([photos, shifted, noisy])


def _score(rows: np.ndarray) -> dict[str, float | int]:
    """Confidence (mean top probability over the photos), instability (mean total-variation
    distance between each photo's answer and its shifted and noisy copies'), their difference,
    and how many classes the photos' top-1 answers name."""
    photos, shifted, noisy = np.split(rows, 3)
    confidence = float(np.mean(np.max(photos, axis=1)))
    moved = 0.5 * (np.abs(photos - shifted).sum(axis=1) + np.abs(photos - noisy).sum(axis=1))
    instability = float(np.mean(moved))
    return {
        "confidence": round(confidence, 4),
        "instability": round(instability, 4),
        "score": round(confidence - instability, 4),
        "classes": len(set(np.argmax(photos, axis=1).tolist())),
    }


def _alive(entry: dict[str, Any] | None) -> bool:
    """Whether a model answers the photos as one that sees them: confidently enough, and not
    with the same class for all of them."""
    return entry is not None and entry["classes"] > 1 and entry["confidence"] >= ALIVE


def choose(scores: dict[str, dict[str, Any] | None]) -> tuple[str, bool]:
    """The candidate to keep and whether the scores decided it (else the fallback)."""

    def score(name: str) -> float:
        entry = scores.get(name)
        return float("-inf") if entry is None else entry["score"]

    others = [name for name in UNIT_SCALE if name != FALLBACK]
    best = max(others, key=score)
    chosen = best if score(best) >= score(FALLBACK) + MARGIN else FALLBACK
    if not _alive(scores.get(chosen)):  # a model trained on pixel values sees nearly nothing
        for name in sorted(PIXEL_SCALE, key=score, reverse=True):
            if _alive(scores.get(name)) and score(name) >= score(chosen) + MARGIN:
                chosen = name
                break
    decided = chosen != FALLBACK or all(score(FALLBACK) >= score(o) + MARGIN for o in others)
    return chosen, decided


def detect(
    transport: Transport, model: ModelSource, size: tuple[int, int]
) -> tuple[Normalization, dict[str, Any]]:
    """The range to use and the report for the manifest."""
    pixels = calibration_pixels(size)
    scores: dict[str, dict[str, Any] | None] = {}
    for name, candidate in CANDIDATES.items():
        header = RequestHeader(
            height=size[0],
            width=size[1],
            image_count=len(pixels),
            model_length=len(model.blob),
            input_tensor=model.input_tensor,
            output_tensor=model.output_tensor,
            normalization=candidate,
            model_sha256=model.sha256,
        )
        try:
            rows, _ = transport.exchange(Request(header, model.blob, pixels.tobytes()))
        except ModelFailed:  # a range the model cannot even run on is no candidate
            scores[name] = None
            continue
        scores[name] = _score(np.asarray(rows))
    chosen, decided = choose(scores)
    report = {"source": "detected" if decided else "undecided", "chosen": chosen, "scores": scores}
    return CANDIDATES[chosen], report
