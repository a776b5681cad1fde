"""The model registry on a real server: register, list, describe, classify by id, delete,
idempotence, restarts and a kill during registration."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from helpers import (
    BIRD_LABELS,
    BIRD_MODEL,
    DEFAULT_MODEL,
    FROZEN_MODEL,
    IMAGENET_LABELS,
    IMAGES,
    PROBABILITY_TOLERANCE,
    Expected,
    Server,
    expected_rows,
    start_gunicorn,
)

from frontend.dataplane.manifest import Options, registration_id
from frontend.store import MANIFEST_FILE, MODEL_FILE, PARTIAL_PREFIX
from tools.fetch_models import sha256_of
from tools.server import process_tree

DEFAULT_ID = registration_id(
    sha256_of(DEFAULT_MODEL), IMAGENET_LABELS.read_text().splitlines(), Options()
)


@pytest.fixture(scope="module")
def bird_id(registry: Server, register) -> str:
    response = register(registry.url, BIRD_MODEL, BIRD_LABELS, name="birds")
    assert response.status_code == 201, response.text
    return response.json()["id"]


def test_registration_describes_the_model(registry: Server, bird_id: str) -> None:
    body = requests.get(f"{registry.url}/api/v1/models/{bird_id}", timeout=10).json()
    assert body["id"] == bird_id
    assert body["id"] == registration_id(
        sha256_of(BIRD_MODEL), BIRD_LABELS.read_text().splitlines(), Options()
    )
    assert body["sha256"] == sha256_of(BIRD_MODEL)
    assert body["options"] == {
        "input_tensor": None,
        "output_tensor": None,
        "normalization": {"mode": "model_default"},
        "input_size": None,
        "preprocessing": None,
    }
    assert body["name"] == "birds" and body["format"] == "tflite"
    assert body["input"] == {
        "name": "map/TensorArrayStack/TensorArrayGatherV3",
        "height": 224,
        "width": 224,
        "size_source": "graph",
        "dtype": "uint8",
        "quantization": [0.0078125, 128],
        "batch": 1,
    }
    assert body["output"]["classes"] == 965 and body["output"]["softmax_applied"] is False
    assert body["normalization"] == {"mode": "raw"}
    assert body["normalization_found"] == {"source": "model"}  # the quantized input's own
    # a quantized TFLite classifier, as Coral's are: photos prepared as pycoral prepares them
    assert body["preprocessing"] == {"profile": "coral", "source": "recognized", "tool": "coral"}
    assert body["labels"] == {"count": 965, "alignment": "exact", "note": None}
    assert body["default"] is False


@pytest.mark.parametrize("row", expected_rows("inat_bird"), ids=str)
def test_bird_rows_by_id(registry: Server, bird_id: str, row: Expected, classify_by_id) -> None:
    best = classify_by_id(registry.url, bird_id, row.image)["predictions"][0]
    assert best["label"] == row.label
    assert abs(best["probability"] - row.probability) <= PROBABILITY_TOLERANCE


def test_same_bytes_same_id(registry: Server, bird_id: str, register) -> None:
    again = register(registry.url, BIRD_MODEL, BIRD_LABELS)
    assert again.status_code == 200
    assert again.json()["id"] == bird_id and again.json()["name"] == "birds"
    renamed = register(registry.url, BIRD_MODEL, BIRD_LABELS, name="birds-api")
    assert renamed.status_code == 200 and renamed.json()["id"] == bird_id
    assert renamed.json()["name"] == "birds-api" and renamed.json()["renamed_from"] == "birds"
    back = requests.patch(f"{registry.url}/api/v1/models/birds-api", json={"name": "birds"})
    assert back.status_code == 200 and back.json()["name"] == "birds"


def test_model_parameter_on_classify(registry: Server, bird_id: str) -> None:
    response = requests.post(
        registry.url + "/api/v1/classify",
        data={"model": bird_id},
        files={"image": (IMAGES / "owl.jpg").read_bytes()},
        timeout=60,
    )
    body = response.json()
    assert body["predictions"][0]["label"] == "Athene cunicularia (Burrowing Owl)"
    assert body["model"]["id"] == bird_id and body["model"]["origin"] == "registered"


def test_list_includes_default_and_registered(registry: Server, bird_id: str) -> None:
    models = requests.get(registry.url + "/api/v1/models", timeout=30).json()["models"]
    by_id = {m["id"]: m for m in models}
    assert by_id[bird_id]["default"] is False
    default = by_id[DEFAULT_ID]
    assert default["default"] is True and default["name"] == DEFAULT_MODEL.name


def test_default_cannot_be_deleted_and_unknown_is_404(registry: Server) -> None:
    response = requests.delete(f"{registry.url}/api/v1/models/{DEFAULT_ID}", timeout=10)
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "model_is_default"
    missing = requests.get(f"{registry.url}/api/v1/models/{'0' * 64}", timeout=10)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"
    bad = requests.post(
        registry.url + "/api/v1/classify",
        data={"model": "nope"},
        files={"image": (IMAGES / "cat.jpg").read_bytes()},
        timeout=10,
    )
    assert bad.status_code == 404


def test_delete_then_gone(registry: Server, register) -> None:
    labels = b"background\n" + BIRD_LABELS.read_bytes()  # one line more: lined up, said so
    copy = Path(registry.log.parent / "copy.tflite")
    copy.write_bytes(BIRD_MODEL.read_bytes() + b"\0")  # other bytes, other id; still loads
    created = register(registry.url, copy, labels)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["labels"]["alignment"] == "dropped_first_line"
    assert (
        requests.delete(f"{registry.url}/api/v1/models/{body['id']}", timeout=10).status_code == 200
    )
    assert requests.get(f"{registry.url}/api/v1/models/{body['id']}", timeout=10).status_code == 404


@pytest.mark.parametrize(
    "model, labels, fields, status, code",
    [
        (BIRD_MODEL, b"a\nb\n", {}, 422, "labels_mismatch"),
        (FROZEN_MODEL, IMAGENET_LABELS, {"output_tensor": "nope"}, 422, "model_tensor_not_found"),
        (FROZEN_MODEL, IMAGENET_LABELS, {"input_tensor": "nope"}, 422, "model_tensor_not_found"),
    ],
)
def test_bad_registrations(registry: Server, model, labels, fields, status, code, register) -> None:
    response = register(registry.url, model, labels, **fields)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_model_over_max_model_bytes_is_413(tmp_path: Path) -> None:
    from frontend import create_app

    app = create_app({"MAX_MODEL_BYTES": 1000, "MODEL_STORE": str(tmp_path)})
    response = app.test_client().post(
        "/api/v1/models",
        data={
            "model": (BIRD_MODEL.open("rb"), "b.tflite"),
            "labels": (BIRD_LABELS.open("rb"), "l.txt"),
        },
    )
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "model_too_large"


def test_frozen_graph_registered_without_tensor_names(
    registry: Server, register, classify_by_id
) -> None:
    response = register(registry.url, FROZEN_MODEL, IMAGENET_LABELS)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["input"]["name"] == "input" and body["input"]["dtype"] == "float32"
    assert body["output"]["name"] == "MobilenetV2/Predictions/Softmax"
    assert body["normalization"] == {"mode": "mean_std", "mean": 127.5, "std": 127.5}
    rows = expected_rows("imagenet")
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda r: classify_by_id(registry.url, body["id"], r.image), rows))
    assert [a["predictions"][0]["label"] for a in answers] == [r.label for r in rows]
    for answer, row in zip(answers, rows, strict=True):
        assert row.frozen_probability is not None
        difference = answer["predictions"][0]["probability"] - row.frozen_probability
        assert abs(difference) <= PROBABILITY_TOLERANCE, (row, answer["predictions"][0])


def test_store_survives_restart_and_kill_during_registration(
    tmp_path: Path, register, classify_by_id, model_workers, wait_for
) -> None:
    store = tmp_path / "store"
    env = {"MODEL_STORE": str(store)}
    first = start_gunicorn(tmp_path, env)
    try:
        bird = register(first.url, BIRD_MODEL, BIRD_LABELS).json()["id"]
    finally:
        first.stop()

    second = start_gunicorn(tmp_path, {**env, "UPLOAD_SPARES": "0"})  # a worker started for it
    assert classify_by_id(second.url, bird, IMAGES / "parrot.jpg")["predictions"][0]["label"] == (
        "Ara macao (Scarlet Macaw)"
    )
    # Kill every server process while it registers the frozen graph: once an upload worker of
    # its own is probing it (that takes seconds: the worker imports TensorFlow).
    before = set(model_workers(second))
    pending = threading.Thread(
        target=lambda: _ignore_errors(register, second.url, FROZEN_MODEL, IMAGENET_LABELS)
    )
    pending.start()
    wait_for(lambda: set(model_workers(second)) - before)
    for pid in process_tree(second.process.pid):
        with contextlib.suppress(ProcessLookupError):  # a sandbox dies with its parent
            os.kill(pid, signal.SIGKILL)
    second.process.wait()
    pending.join()
    frozen_id = registration_id(
        sha256_of(FROZEN_MODEL), IMAGENET_LABELS.read_text().splitlines(), Options()
    )
    assert not (store / frozen_id).exists()
    for folder in store.iterdir():
        if folder.is_dir() and not folder.name.startswith(PARTIAL_PREFIX):
            assert (folder / MANIFEST_FILE).is_file() and (folder / MODEL_FILE).is_file()

    third = start_gunicorn(tmp_path, env)
    try:
        assert not [p for p in store.iterdir() if p.name.startswith(PARTIAL_PREFIX)]
        ids = [
            m["id"] for m in requests.get(third.url + "/api/v1/models", timeout=30).json()["models"]
        ]
        assert bird in ids and frozen_id not in ids
        assert classify_by_id(third.url, bird, IMAGES / "owl.jpg")["predictions"][0]["label"] == (
            "Athene cunicularia (Burrowing Owl)"
        )
    finally:
        third.stop()


def _ignore_errors(function, *args) -> None:
    with contextlib.suppress(requests.RequestException):
        function(*args)
