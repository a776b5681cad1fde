"""Finding the input range a float model expects, when neither the model, its tool nor the user
says it: the model runs on eight natural photos (frontend/calibration) under each candidate
range, prepared as its preprocessing profile says, and
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
higher by MARGIN and does not give all the photos one class.

A range decides only when it wins clearly against every other candidate considered: by MARGIN
in the mean score, and on most photos one by one (on PHOTOS_TO_WIN of them it scores no worse
than MARGIN below the other), so that one photo's swing cannot carry it; otherwise the search is
`undecided` and [-1, 1] is kept. The report says how sure it was (the margin, the photos on
which it was no worse) and keeps every score.

Quantized models need none of this (their input's scale and zero point say it), a recognised
tool's convention wins over it (frontend/preprocessing.py), and an explicit `input_mean` /
`input_std` always wins."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from frontend.images import check_pixels, prepare_image
from frontend.preprocessing import Profile
from protocol import ModelFailed, Normalization
from protocol.lru import LRU

if TYPE_CHECKING:
    from frontend.dataplane.models import ModelSource
    from frontend.dataplane.runner import Runner

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
PHOTOS_TO_WIN = 0.75  # the share of the photos a range must score no worse on, one by one
ALIVE = 0.3  # mean top probability under which a unit-scale range looks unseen by the model


# Prepared photos by (size, profile), within this many bytes whatever sizes are asked for.
_prepared: LRU[tuple[tuple[int, int], str], np.ndarray] = LRU(
    max_cost=64 << 20, cost=lambda pixels: pixels.nbytes
)


def calibration_pixels(size: tuple[int, int], profile: Profile) -> np.ndarray:
    """The photos prepared at `size` with `profile`, then each shifted two pixels to the
    right, then each with a little noise (a fixed seed): uint8 [3 x photos, height, width, 3].
    Their memory is checked first (check_pixels), and the cache keeps them within its bytes."""
    paths = sorted(PHOTOS.glob("*.jpg"))
    check_pixels(3 * len(paths), size, "finding the model's input range on the calibration photos")
    cached = _prepared.get((size, profile.name))
    if cached is not None:
        return cached
    photos = np.stack([prepare_image(p.read_bytes(), size, profile=profile) for p in paths])
    shifted = np.roll(photos, 2, axis=2)
    noise = np.random.default_rng(0).integers(-6, 7, photos.shape)
    noisy = np.clip(photos.astype(np.int16) + noise, 0, 255).astype(np.uint8)
    prepared = np.concatenate([photos, shifted, noisy])
    _prepared.put((size, profile.name), prepared)
    return prepared


def _score(rows: np.ndarray) -> dict[str, Any]:
    """Confidence (mean top probability over the photos), instability (mean total-variation
    distance between each photo's answer and its shifted and noisy copies'), their difference,
    the same per photo, and how many classes the photos' top-1 answers name."""
    photos, shifted, noisy = np.split(rows, 3)
    confident = np.max(photos, axis=1)
    moved = 0.5 * (np.abs(photos - shifted).sum(axis=1) + np.abs(photos - noisy).sum(axis=1))
    return {
        "confidence": round(float(np.mean(confident)), 4),
        "instability": round(float(np.mean(moved)), 4),
        "score": round(float(np.mean(confident - moved)), 4),
        "per_photo": [round(float(v), 4) for v in confident - moved],
        "classes": len(set(np.argmax(photos, axis=1).tolist())),
    }


def _alive(entry: dict[str, Any] | None) -> bool:
    """Whether a model answers the photos as one that sees them: confidently enough, and not
    with the same class for all of them."""
    return entry is not None and entry["classes"] > 1 and entry["confidence"] >= ALIVE


def _no_worse(mine: dict[str, Any], theirs: dict[str, Any]) -> int:
    """On how many photos `mine` scores no worse than MARGIN below `theirs`."""
    pairs = zip(mine["per_photo"], theirs["per_photo"], strict=True)
    return sum(a >= b - MARGIN for a, b in pairs)


def _beats(scores: dict[str, dict[str, Any] | None], one: str, other: str) -> bool:
    """Whether `one` scores clearly better than `other`: by MARGIN on the mean, and no worse
    on at least PHOTOS_TO_WIN of the photos one by one."""
    mine, theirs = scores.get(one), scores.get(other)
    if mine is None:
        return False
    if theirs is None:
        return True
    enough = PHOTOS_TO_WIN * len(mine["per_photo"])
    return mine["score"] >= theirs["score"] + MARGIN and _no_worse(mine, theirs) >= enough


def choose(scores: dict[str, dict[str, Any] | None]) -> tuple[str, bool]:
    """The candidate to keep and whether the scores decided it clearly (else the fallback)."""
    others = [name for name in UNIT_SCALE if name != FALLBACK]
    chosen = next((name for name in others if _beats(scores, name, FALLBACK)), FALLBACK)
    if not _alive(scores.get(chosen)):  # a model trained on pixel values sees nearly nothing
        for name in PIXEL_SCALE:
            if _alive(scores.get(name)) and _beats(scores, name, chosen):
                chosen = name
                break
    rivals = [name for name in (FALLBACK, *others) if name != chosen]
    decided = all(_beats(scores, chosen, rival) for rival in rivals)
    return chosen, decided


def _certainty(scores: dict[str, dict[str, Any] | None], chosen: str) -> dict[str, Any]:
    """How clearly `chosen` won against the best of the rest: the margin of mean scores and
    the photos on which it scored no worse."""
    mine = scores[chosen]
    rivals = [(n, e) for n, e in scores.items() if n != chosen and e is not None]
    if mine is None or not rivals:
        return {}
    name, best = max(rivals, key=lambda item: item[1]["score"])
    return {
        "runner_up": name,
        "margin": round(mine["score"] - best["score"], 4),
        "photos_no_worse": f"{_no_worse(mine, best)} of {len(mine['per_photo'])}",
    }


def detect(
    runner: Runner, model: ModelSource, size: tuple[int, int], profile: Profile
) -> tuple[Normalization, dict[str, Any]]:
    """The range to use and the report for the manifest."""
    pixels = calibration_pixels(size, profile)
    scores: dict[str, dict[str, Any] | None] = {}
    for name, candidate in CANDIDATES.items():
        try:
            rows = runner.run(model, pixels, candidate)
        except ModelFailed:  # a range the model cannot even run on is no candidate
            scores[name] = None
            continue
        scores[name] = _score(np.asarray(rows))
    chosen, decided = choose(scores)
    report = {
        "source": "detected" if decided else "undecided",
        "chosen": chosen,
        **_certainty(scores, chosen),
        "scores": scores,
    }
    return CANDIDATES[chosen], report
