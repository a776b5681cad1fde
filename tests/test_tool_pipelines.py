"""Answers as the model's own tool gives them: models shaped as TensorFlow for Poets, Teachable
Machine and Coral leave them (tests/make_tool_models.py), registered with their labels and
nothing else, are recognised, prepared with their tool's profile and range at the size they were
built for, and agree photo by photo with each tool's own pipeline, run on the same photos in
another process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from helpers import (
    BIRD_LABELS,
    BIRD_MODEL,
    FROZEN_MODEL,
    IMAGENET_LABELS,
    IMAGES,
    Server,
    made_by,
    start_gunicorn,
)

MIN_AGREEMENT = 0.97
PM128 = {"mode": "mean_std", "mean": 128.0, "std": 128.0}  # label_image.py's (x - 128) / 128
PM1 = {"mode": "mean_std", "mean": 127.5, "std": 127.5}  # Teachable Machine's x / 127.5 - 1
# file: (labels, where it is, profile, normalisation, (side, how the side was found))
CASES = {
    "tf_poets.pb": (IMAGENET_LABELS, "tools", "tf_poets", PM128, (224, "graph")),
    "tf_poets_optimized.pb": (IMAGENET_LABELS, "tools", "tf_poets", PM128, (128, "pooling")),
    "tf_poets.lite": (IMAGENET_LABELS, "tools", "tf_poets", PM128, (224, "graph")),
    "teachable_machine.h5": ("labels.txt", "retrained", "teachable_machine", PM1, (160, "graph")),
    "teachable_machine_tf1.zip": (
        "labels.txt", "tools", "teachable_machine", PM1, (160, "graph")
    ),
    "birds.tflite": (BIRD_LABELS, "birds", "coral", {"mode": "raw"}, (224, "graph")),
}  # fmt: skip
PHOTOS = sorted(IMAGES.glob("*.jpg"))


@pytest.fixture(scope="module")
def tools(tmp_path_factory: pytest.TempPathFactory, retrained: Path) -> Path:
    out = tmp_path_factory.mktemp("tools")
    return made_by("make_tool_models.py", out, str(FROZEN_MODEL), str(retrained), str(BIRD_MODEL))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_gunicorn(tmp_path_factory.mktemp("tools-service"))
    yield started
    started.stop()


@pytest.mark.parametrize("file", CASES)
def test_a_model_answers_as_its_tool_does(
    file: str, tools: Path, retrained: Path, service: Server, register
) -> None:
    labels, where, profile, normalization, (side, size_source) = CASES[file]
    folders = {"tools": tools, "retrained": retrained, "birds": BIRD_MODEL.parent}
    model = BIRD_MODEL if where == "birds" else folders[where] / file
    labels_path = retrained / labels if isinstance(labels, str) else labels
    name = Path(file).stem.replace(".", "-") + "-" + Path(file).suffix.lstrip(".")
    created = register(service.url, model, labels_path, name=name)
    assert created.status_code == 201, created.text
    manifest = created.json()
    recognized = {"profile": profile, "source": "recognized", "tool": profile}
    assert manifest["preprocessing"] == recognized
    assert manifest["normalization"] == normalization
    assert (manifest["input"]["height"], manifest["input"]["size_source"]) == (side, size_source)

    reference = json.loads((tools / "reference.json").read_text())[file]
    agreed = 0
    for photo in PHOTOS:
        answer = requests.post(
            f"{service.url}/api/v1/models/{name}/classify",
            files={"image": photo.read_bytes()},
            timeout=120,
        )
        assert answer.status_code == 200, answer.text
        assert answer.json()["model"]["preprocessing"] == profile
        agreed += answer.json()["predictions"][0]["index"] == reference[photo.name][0]
    agreement = agreed / len(PHOTOS)
    print(f"{file}: {profile} agrees with its tool on {agreed} of {len(PHOTOS)} photos")
    assert agreement >= MIN_AGREEMENT, (file, agreed, len(PHOTOS))
