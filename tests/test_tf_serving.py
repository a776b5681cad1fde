"""TensorFlow Serving's REST API, as its clients call it: status, metadata, :predict and
:classify with base64 images, on the real server."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests
from helpers import DEFAULT_MODEL, IMAGENET_LABELS, IMAGES

PHOTOS = {"cat.jpg": "Egyptian cat", "grace_hopper.jpg": "military uniform", "parrot.jpg": "macaw"}
LABELS = IMAGENET_LABELS.read_text().splitlines()


def _b64(name: str) -> dict[str, str]:
    return {"b64": base64.b64encode((IMAGES / name).read_bytes()).decode()}


@pytest.mark.parametrize("name", ["default", DEFAULT_MODEL.name])
def test_status_and_metadata(base_url: str, name: str) -> None:
    status = requests.get(f"{base_url}/v1/models/{name}", timeout=30)
    assert status.status_code == 200, status.text
    assert status.json()["model_version_status"][0]["state"] == "AVAILABLE"
    metadata = requests.get(f"{base_url}/v1/models/{name}/metadata", timeout=30).json()
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    shape = signature["outputs"]["probabilities"]["tensor_shape"]["dim"]
    assert [int(d["size"]) for d in shape] == [-1, 1001]


@pytest.mark.parametrize("wrapped", [False, True], ids=["b64", "image_bytes"])
def test_predict_answers_probabilities_in_order(base_url: str, wrapped: bool) -> None:
    instances = [{"image_bytes": _b64(n)} if wrapped else _b64(n) for n in PHOTOS]
    response = requests.post(
        f"{base_url}/v1/models/default:predict", json={"instances": instances}, timeout=60
    )
    assert response.status_code == 200, response.text
    predictions = np.array(response.json()["predictions"])
    assert predictions.shape == (3, 1001)
    assert [LABELS[i] for i in predictions.argmax(axis=1)] == list(PHOTOS.values())


def test_classify_answers_labels_and_scores(base_url: str) -> None:
    examples = [{"image": _b64(n)} for n in PHOTOS]
    response = requests.post(
        f"{base_url}/v1/models/{DEFAULT_MODEL.name}:classify",
        json={"examples": examples, "top_k": 2},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r[0][0] for r in results] == list(PHOTOS.values())
    assert all(len(r) == 2 and r[0][1] >= r[1][1] for r in results)


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("default:predict", {"instances": []}, 400, "non-empty list 'instances'"),
        ("default:predict", {"instances": [{"b64": "@@@"}]}, 400, "not base64"),
        ("default:predict", {"instances": [[1, 2, 3]]}, 400, '{"b64": "<base64'),
        (
            "default:predict",
            {"instances": [{"b64": base64.b64encode(b"text").decode()}]},
            400,
            "instances[0]: the file is not an image",
        ),
        ("nothing-here:predict", {"instances": [_b64("cat.jpg")]}, 404, "no model with id"),
        ("default:classify", {"examples": [_b64("cat.jpg")], "top_k": 0}, 400, "top_k"),
        ("default:predict", "[" * 100_000 + "]" * 100_000, 400, "nests too deep"),
        ("default:predict", "{not json", 400, "not JSON"),
        ("default:predict", '{"instances": [' + '{"b64": ""},' * 200 + "]}", 413, "MAX_IMAGES"),
    ],
)
def test_bad_requests_get_tf_serving_errors(
    base_url: str, path: str, body: dict | str, status: int, message: str
) -> None:
    sent = {"data": body} if isinstance(body, str) else {"json": body}
    response = requests.post(f"{base_url}/v1/models/{path}", **sent, timeout=60)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
