"""A user's own retrained MobileNet, made here with Keras (tests/retrain_keras.py), frozen to a
GraphDef and converted to TFLite, registered without naming any tensor: both give Keras's own
top-1 on the same images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, Server
from test_registry import classify_by_id, register

MIN_MARGIN = 0.1  # images where Keras itself is nearly undecided prove nothing either way


@pytest.fixture(scope="module")
def retrained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("retrained")
    subprocess.run(
        [sys.executable, str(ROOT / "tests" / "retrain_keras.py"), str(out)],
        check=True,
        cwd=ROOT,
        timeout=600,
        capture_output=True,
    )
    return out


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
    "artifact, expected_format, expected_input",
    [("frozen.pb", "graphdef", "pixels_scaled_to_pm1"), ("model.tflite", "tflite", None)],
)
def test_retrained_model_matches_keras(
    registry: Server,
    retrained: Path,
    artifact: str,
    expected_format: str,
    expected_input: str | None,
) -> None:
    response = register(registry.url, retrained / artifact, retrained / "labels.txt")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["format"] == expected_format
    assert (body["input"]["height"], body["input"]["width"]) == (160, 160)
    assert body["input"]["dtype"] == "float32"
    assert body["normalization"] == {"mode": "mean_std", "mean": 127.5, "std": 127.5}
    assert body["output"]["classes"] == 3
    if expected_input:
        assert body["input"]["name"] == expected_input
    labels = (retrained / "labels.txt").read_text().split()
    keras = json.loads((retrained / "keras.json").read_text())
    for name, best in decisive_images(retrained).items():
        answer = classify_by_id(registry.url, body["id"], retrained / "images" / name)
        assert answer["predictions"][0]["label"] == labels[best], (name, keras[name], answer)
        served = {p["index"]: p["probability"] for p in answer["predictions"]}
        assert served == pytest.approx(dict(enumerate(keras[name])), abs=0.02)
