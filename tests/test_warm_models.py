"""Registered models stay warm: a client alternating among four registered models of four
formats (a quantized TFLite, a Teachable Machine Keras .h5, a frozen GraphDef, a float TFLite)
gets every answer from a worker that already holds the model: no process is started or
stopped, no model is sent or loaded again, from the first request after each registration on.
Each model has a worker of its own, apart from the default model's."""

from __future__ import annotations

import json
import re
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
    SPARES,
    Server,
    start_gunicorn,
)
from test_retrained_keras import PM1, decisive_images

CLASSES = ("reddish", "greenish", "bluish")  # tests/retrain_keras.py


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_gunicorn(tmp_path_factory.mktemp("warm"), SPARES)  # spares on
    yield started
    started.stop()


def cache_counts(url: str) -> dict[str, float]:
    text = requests.get(url + "/metrics", timeout=10).text
    return {
        result: float(value)
        for result, value in re.findall(
            r'^mobilenet_model_cache_total\{result="(\w+)"\} (\S+)$', text, re.M
        )
    }


def test_four_formats_alternating_stay_warm(
    server: Server, retrained: Path, register, model_workers
) -> None:
    colours = decisive_images(retrained)
    first, second = list(colours)[:2]
    plan = []  # (name, photo, expected top label)
    for name, model, labels, fields, photo, label in [
        ("birds", BIRD_MODEL, BIRD_LABELS, {}, IMAGES / "parrot.jpg", "Ara macao (Scarlet Macaw)"),
        ("tm-colours", retrained / "teachable_machine.h5", retrained / "labels.txt", PM1,
         retrained / "images" / first, CLASSES[colours[first]]),
        ("imagenet-graph", FROZEN_MODEL, IMAGENET_LABELS, {}, IMAGES / "cat.jpg", "Egyptian cat"),
        ("colours-lite", retrained / "model.tflite", retrained / "labels.txt", PM1,
         retrained / "images" / second, CLASSES[colours[second]]),
    ]:  # fmt: skip
        created = register(server.url, model, labels, name=name, **fields)
        assert created.status_code == 201, created.text
        plan.append((name, photo, label))
    formats = {
        m["name"]: (m.get("source") or {}).get("format", m["format"])
        for m in requests.get(server.url + "/api/v1/models", timeout=30).json()["models"]
    }
    assert [formats[name] for name, _, _ in plan] == ["tflite", "keras", "graphdef", "tflite"]

    trusted = set(model_workers(server, trusted_only=True))
    workers = set(model_workers(server))
    # One worker per model, a spare per runtime (LiteRT, TensorFlow), and the default's own.
    assert len(workers - trusted) == 4 + 2, (workers, trusted)
    before = cache_counts(server.url)
    for _ in range(3):
        for name, photo, label in plan:
            answer = requests.post(
                f"{server.url}/api/v1/models/{name}/classify",
                files={"image": photo.read_bytes()},
                timeout=60,
            )
            assert answer.status_code == 200, answer.text
            assert answer.json()["model"]["name"] == name
            assert answer.json()["predictions"][0]["label"] == label, (name, answer.json())
    after = cache_counts(server.url)
    assert after["hit"] - before["hit"] == 12
    assert after["miss"] == before["miss"]  # no model was sent or loaded again
    assert set(model_workers(server)) == workers  # nothing started or stopped
    assert json.loads(requests.get(server.url + "/readyz", timeout=30).text)["status"] == "ready"
