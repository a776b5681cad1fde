"""Many images per call: several `image` (or `images`) parts in one /api/v1/classify call give
one result per image in order, from one frame; a bad image fails only its own entry."""

from __future__ import annotations

import requests
from helpers import IMAGES, PROBABILITY_TOLERANCE, expected_rows

ROWS = expected_rows("imagenet")


def _post(base_url: str, field: str, images: list[tuple[str, bytes]], **data: str):
    files = [(field, (name, content)) for name, content in images]
    return requests.post(base_url + "/api/v1/classify", files=files, data=data, timeout=120)


def test_several_images_answer_in_order(base_url: str) -> None:
    images = [(row.image.name, row.image.read_bytes()) for row in ROWS]
    response = _post(base_url, "image", images, top_k="3")
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["image"] for r in results] == [row.image.name for row in ROWS]
    for result, row in zip(results, ROWS, strict=True):
        assert result["predictions"][0]["label"] == row.label
        assert abs(result["predictions"][0]["probability"] - row.probability) <= (
            PROBABILITY_TOLERANCE
        )
        assert len(result["predictions"]) == 3
    # Runs of neighbours, one frame each, one run per worker of the pool (2 cores: 2 runs):
    # the entries of a run waited for the same worker call.
    assert 1 <= len({r["timings_ms"]["worker"] for r in results}) <= 2


def test_a_bad_image_fails_only_its_own_entry(base_url: str) -> None:
    images = [
        ("cat.jpg", (IMAGES / "cat.jpg").read_bytes()),
        ("notes.txt", b"not an image at all"),
        ("empty.jpg", b""),
        ("parrot.jpg", (IMAGES / "parrot.jpg").read_bytes()),
    ]
    response = _post(base_url, "image", images)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert results[0]["predictions"][0]["label"] == "Egyptian cat"
    assert results[1]["error"]["code"] == "invalid_image"
    assert "not an image" in results[1]["error"]["message"]
    assert results[2]["error"]["code"] == "invalid_image"
    assert results[3]["predictions"][0]["label"] == "macaw"


def test_images_field_always_answers_a_list(base_url: str) -> None:
    response = _post(base_url, "images", [("cat.jpg", (IMAGES / "cat.jpg").read_bytes())])
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["predictions"][0]["label"] == "Egyptian cat"
    all_bad = _post(base_url, "images", [("x.jpg", b"garbage")])
    assert all_bad.status_code == 200
    assert all_bad.json()["results"][0]["error"]["code"] == "invalid_image"


def test_over_the_per_call_limit_is_refused(base_url: str) -> None:
    image = (IMAGES / "cat.jpg").read_bytes()
    response = _post(base_url, "images", [(f"{i}.jpg", image) for i in range(65)])
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "too_many_images"
    assert "MAX_IMAGES_PER_CALL" in response.json()["error"]["message"]
    # The server keeps serving.
    assert _post(base_url, "image", [("cat.jpg", image)]).status_code == 200
