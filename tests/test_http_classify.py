"""Classification over HTTP on the real gunicorn server with the real models."""

from __future__ import annotations

import html
import re
from concurrent.futures import ThreadPoolExecutor

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
    expected_rows,
)

SENTENCE = re.compile(
    r"^Detected <b>(.*)</b> with <u>(very high|high|medium|low)</u> confidence\.$"
)


def infer(base_url: str, image, model=None, labels=None) -> requests.Response:
    files = {
        "image_file": ("image.jpg", image.read_bytes() if hasattr(image, "read_bytes") else image)
    }
    if model is not None:
        files["model_file"] = (model.name, model.read_bytes())
        files["label_file"] = (
            "labels.txt",
            labels if isinstance(labels, bytes) else labels.read_bytes(),
        )
    return requests.post(base_url + "/infer", files=files, timeout=120)


def sentence_label(response: requests.Response) -> str:
    assert response.status_code == 200, response.text
    match = SENTENCE.match(response.text)
    assert match, response.text
    return html.unescape(match.group(1))


@pytest.mark.parametrize("row", expected_rows("imagenet"), ids=str)
def test_api_default_model(base_url: str, row: Expected) -> None:
    response = requests.post(
        base_url + "/api/v1/classify", files={"image": row.image.open("rb")}, timeout=60
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["predictions"][0]["label"] == row.label
    assert abs(body["predictions"][0]["probability"] - row.probability) <= PROBABILITY_TOLERANCE
    assert len(body["predictions"]) == 5
    probabilities = [p["probability"] for p in body["predictions"]]
    assert probabilities == sorted(probabilities, reverse=True)
    assert body["model"]["name"] == DEFAULT_MODEL.name and body["model"]["format"] == "tflite"
    assert body["confidence"] in ("very high", "high", "medium", "low")
    assert set(body["timings_ms"]) == {"decode", "worker", "total"}


@pytest.fixture(scope="module")
def frozen_graph_answers(base_url: str) -> dict[str, str]:
    """All imagenet rows through /infer with the frozen graph, two at a time (2 cores)."""
    rows = expected_rows("imagenet")
    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = pool.map(
            lambda r: infer(base_url, r.image, FROZEN_MODEL, IMAGENET_LABELS), rows
        )
        return {r.image.name: sentence_label(resp) for r, resp in zip(rows, responses, strict=True)}


@pytest.mark.parametrize("row", expected_rows("imagenet"), ids=str)
def test_infer_frozen_graph_upload(frozen_graph_answers: dict[str, str], row: Expected) -> None:
    assert frozen_graph_answers[row.image.name] == row.label


@pytest.mark.parametrize("row", expected_rows("inat_bird"), ids=str)
def test_infer_bird_model_upload(base_url: str, row: Expected) -> None:
    assert sentence_label(infer(base_url, row.image, BIRD_MODEL, BIRD_LABELS)) == row.label


def test_infer_default_model_and_confidence_word(base_url: str) -> None:
    response = infer(base_url, IMAGES / "parrot.jpg")
    assert response.text == "Detected <b>macaw</b> with <u>very high</u> confidence."


def test_label_from_users_file_is_escaped(base_url: str) -> None:
    lines = IMAGENET_LABELS.read_text().splitlines()
    lines[653] = '<script>alert("owned")</script>'
    response = infer(
        base_url, IMAGES / "grace_hopper.jpg", DEFAULT_MODEL, "\n".join(lines).encode()
    )
    assert response.status_code == 200
    assert "<script>" not in response.text
    assert "&lt;script&gt;alert(&#34;owned&#34;)&lt;/script&gt;" in response.text


def test_labels_one_line_short_are_refused_naming_both_counts(base_url: str) -> None:
    without_background = "\n".join(IMAGENET_LABELS.read_text().splitlines()[1:]).encode()
    response = requests.post(
        base_url + "/api/v1/classify",
        files={
            "image": (IMAGES / "cat.jpg").read_bytes(),
            "model_file": ("m.tflite", DEFAULT_MODEL.read_bytes()),
            "label_file": ("l.txt", without_background),
        },
        timeout=60,
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "labels_mismatch"
    assert "1000 lines but the model has 1001 outputs" in error["message"]


def test_labels_one_line_extra_are_lined_up(base_url: str) -> None:
    extra = b"unused\n" + BIRD_LABELS.read_bytes()
    response = requests.post(
        base_url + "/api/v1/classify",
        files={
            "image": (IMAGES / "parrot.jpg").read_bytes(),
            "model_file": ("b.tflite", BIRD_MODEL.read_bytes()),
            "label_file": ("l.txt", extra),
        },
        timeout=60,
    )
    body = response.json()
    assert body["predictions"][0]["label"] == "Ara macao (Scarlet Macaw)"
    assert body["labels"]["alignment"] == "dropped_first_line"


def test_raw_image_body_and_top_k(base_url: str) -> None:
    response = requests.post(
        base_url + "/api/v1/classify?top_k=2",
        data=(IMAGES / "hot_dog.jpg").read_bytes(),
        headers={"Content-Type": "image/jpeg"},
        timeout=60,
    )
    body = response.json()
    assert [p["label"] for p in body["predictions"]][:1] == ["hotdog, hot dog, red hot"]
    assert len(body["predictions"]) == 2


def test_input_mean_and_std_override_reach_the_model(base_url: str) -> None:
    """A wrong normalisation must change the answer: proof the override is applied."""

    def top(extra: dict) -> dict:
        return requests.post(
            base_url + "/api/v1/classify",
            files={
                "image": (IMAGES / "grace_hopper.jpg").read_bytes(),
                "model_file": ("f.pb", FROZEN_MODEL.read_bytes()),
                "label_file": ("l.txt", IMAGENET_LABELS.read_bytes()),
            },
            data=extra,
            timeout=120,
        ).json()["predictions"][0]

    assert top({"input_mean": "127.5", "input_std": "127.5"})["label"] == "military uniform"
    assert top({"input_mean": "0", "input_std": "1"})["label"] != "military uniform"


def test_health_and_readiness(base_url: str) -> None:
    assert requests.get(base_url + "/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(base_url + "/readyz", timeout=60)
    assert ready.status_code == 200
    assert ready.json()["model"]["name"] == DEFAULT_MODEL.name
