"""Why this label: occlusion maps from the real worker, on a quantized TFLite model and on a
frozen graph alike."""

from __future__ import annotations

import base64
import io

import pytest
import requests
from helpers import FROZEN_MODEL, IMAGENET_LABELS, IMAGES
from PIL import Image

# Checked by eye once on grace_hopper.jpg, as fractions of the photo (left, top, right, bottom):
# her cap with its badge and her jacket with its ribbons are the uniform; the flag on the left
# and the blue wall on the right are the background.
UNIFORM = [(0.28, 0.0, 0.76, 0.32), (0.0, 0.62, 1.0, 1.0)]
BACKGROUND = [(0.0, 0.0, 0.27, 0.6), (0.77, 0.0, 1.0, 0.6)]


def _inside(point: tuple[float, float], box: tuple[float, float, float, float]) -> bool:
    x, y = point
    left, top, right, bottom = box
    return left <= x <= right and top <= y <= bottom


def _explain(base_url: str, **fields) -> requests.Response:
    files = {"image": (IMAGES / "grace_hopper.jpg").read_bytes()}
    for name in ("model_file", "label_file"):
        if name in fields:
            files[name] = fields.pop(name)
    return requests.post(base_url + "/api/v1/explain", files=files, data=fields, timeout=120)


def _mean_fall(body: dict, boxes: list) -> float:
    falls = [
        fall
        for grid_row, box_row in zip(body["grid"], body["boxes"], strict=True)
        for fall, (left, top, right, bottom) in zip(grid_row, box_row, strict=True)
        if any(_inside(((left + right) / 2, (top + bottom) / 2), b) for b in boxes)
    ]
    assert falls, "no region centre in the boxes"
    return sum(falls) / len(falls)


@pytest.mark.parametrize("model", ["default TFLite", "frozen graph"])
def test_military_uniform_comes_from_the_uniform(base_url: str, model: str) -> None:
    fields = {}
    if model == "frozen graph":
        fields = {
            "model_file": (FROZEN_MODEL.name, FROZEN_MODEL.read_bytes()),
            "label_file": ("labels.txt", IMAGENET_LABELS.read_bytes()),
        }
    response = _explain(base_url, **fields)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["label"]["label"] == "military uniform"
    assert body["classifications"] == 1 + 7 * 7
    assert len(body["grid"]) == 7 and all(len(row) == 7 for row in body["grid"])
    box = body["strongest"]["box"]
    centre = ((box["left"] + box["right"]) / 2, (box["top"] + box["bottom"]) / 2)
    assert any(_inside(centre, b) for b in UNIFORM), body["strongest"]
    assert not any(_inside(centre, b) for b in BACKGROUND)
    assert _mean_fall(body, UNIFORM) > 2 * _mean_fall(body, BACKGROUND)
    overlay = Image.open(io.BytesIO(base64.b64decode(body["overlay_png"].split(",", 1)[1])))
    assert overlay.format == "PNG" and overlay.size == (224, 224)


def test_another_label_a_coarser_grid_and_the_png_alone(base_url: str) -> None:
    response = _explain(base_url, label="bow tie, bow-tie, bowtie", grid="4", format="png")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (224, 224)
    by_number = _explain(base_url, label="458", grid="4").json()  # 458: bow tie
    assert by_number["label"]["label"] == "bow tie, bow-tie, bowtie"
    assert by_number["classifications"] == 17


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"grid": "50"}, "grid must be a whole number from 3 to 12"),
        ({"grid": "x"}, "grid must be"),
        ({"label": "no such thing"}, "no class 'no such thing'"),
        ({"label": "5000"}, "no class '5000'"),
    ],
)
def test_bad_explain_fields_are_clear_errors(base_url: str, fields: dict, message: str) -> None:
    response = _explain(base_url, **fields)
    assert response.status_code == 400
    assert message in response.json()["error"]["message"]


def test_a_grid_costs_its_classifications_within_the_per_call_limit(base_url: str) -> None:
    response = _explain(base_url, grid="8")  # 1 + 64 classifications, over MAX_IMAGES_PER_CALL
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_images"
    assert "65 images in an explanation on a 8x8 grid" in response.json()["error"]["message"]
