"""A user's own retrained MobileNet, made here with Keras (tests/retrain_keras.py), frozen to a
GraphDef and converted to TFLite, registered without naming any tensor: both give Keras's own
top-1 on the same images.

The model tells colours of noise apart, not what natural photos show, so the calibration photos
cannot tell which input range it takes (frontend/normalization.py): its range, [-1, 1], is
given, as `input_mean` and `input_std`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import Server

MIN_MARGIN = 0.1  # images where Keras itself is nearly undecided prove nothing either way
PM1 = {"input_mean": "127.5", "input_std": "127.5"}  # the range it was trained on


def decisive_images(retrained: Path) -> dict[str, int]:
    keras = json.loads((retrained / "keras.json").read_text())
    decisive = {}
    for name, probabilities in keras.items():
        ordered = sorted(probabilities, reverse=True)
        if ordered[0] - ordered[1] >= MIN_MARGIN:
            decisive[name] = probabilities.index(ordered[0])
    assert len(decisive) >= 4, keras
    return decisive


@pytest.mark.parametrize(
    "artifact, expected_format, images",
    [
        ("frozen.pb", "graphdef", None),
        ("model.tflite", "tflite", None),
        # Variants, on fewer images (a SavedModel costs seconds per request to load):
        ("frozen_batch1.pb", "graphdef", 2),
        ("logits.pb", "graphdef", 2),
        ("savedmodel.zip", "savedmodel", 1),
        ("savedmodel.tar.gz", "savedmodel", 1),
    ],
)
def test_retrained_model_matches_keras(
    registry: Server,
    retrained: Path,
    artifact: str,
    expected_format: str,
    images: int | None,
    register,
    classify_by_id,
) -> None:
    response = register(registry.url, retrained / artifact, retrained / "labels.txt", **PM1)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["format"] == expected_format
    assert (body["input"]["height"], body["input"]["width"]) == (160, 160)
    assert body["input"]["dtype"] == "float32"
    assert body["normalization"] == {"mode": "mean_std", "mean": 127.5, "std": 127.5}
    assert body["output"]["classes"] == 3
    assert body["output"]["softmax_applied"] is (artifact == "logits.pb")
    if expected_format != "tflite":  # the converter renames TFLite tensors; others keep ours
        assert body["input"]["name"] == "pixels_scaled_to_pm1"
    labels = (retrained / "labels.txt").read_text().split()
    keras = json.loads((retrained / "keras.json").read_text())
    for name, best in list(decisive_images(retrained).items())[:images]:
        answer = classify_by_id(registry.url, body["id"], retrained / "images" / name)
        assert answer["predictions"][0]["label"] == labels[best], (name, keras[name], answer)
        served = {p["index"]: p["probability"] for p in answer["predictions"]}
        assert served == pytest.approx(dict(enumerate(keras[name])), abs=0.02)


def test_ambiguous_outputs_are_listed_then_named(
    registry: Server, retrained: Path, register, classify_by_id
) -> None:
    model, labels = retrained / "two_outputs.pb", retrained / "labels.txt"
    refused = register(registry.url, model, labels, **PM1)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert error["code"] == "model_tensor_not_found"
    assert "candidates are Identity, Identity_1" in error["message"]
    named = register(registry.url, model, labels, output_tensor="Identity", **PM1)
    assert named.status_code == 201, named.text
    best_name, best = next(iter(decisive_images(retrained).items()))
    answer = classify_by_id(registry.url, named.json()["id"], retrained / "images" / best_name)
    assert answer["predictions"][0]["index"] == best
