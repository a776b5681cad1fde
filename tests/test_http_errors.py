"""Bad input gets a clear 4xx JSON error naming what was wrong, and the server keeps serving."""

from __future__ import annotations

import io
import zlib

import numpy as np
import pytest
import requests
from helpers import DEFAULT_MODEL, IMAGENET_LABELS, IMAGES
from PIL import Image
from tflite_fixtures import custom_op_model

CAT = (IMAGES / "cat.jpg").read_bytes()


def classify(base_url: str, **files) -> requests.Response:
    return requests.post(base_url + "/api/v1/classify", files=files, timeout=60)


def _png(mode: str, size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def _huge_png_header() -> bytes:
    """A 1x1 PNG whose header claims 100000 x 100000 pixels."""
    data = bytearray(_png("RGB", (1, 1)))
    data[16:24] = (100_000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


CASES = {
    "empty upload": ({"image": ("empty.jpg", b"")}, 400, "invalid_image", "empty"),
    "text file as image": (
        {"image": ("notes.txt", b"just some text\n" * 20)},
        400,
        "invalid_image",
        "not an image",
    ),
    "truncated jpeg": (
        {"image": ("cut.jpg", CAT[: len(CAT) // 3])},
        400,
        "invalid_image",
        "truncated",
    ),
    "garbage model": (
        {
            "image": CAT,
            "model_file": ("m.pb", bytes(range(256)) * 64),
            "label_file": ("l.txt", IMAGENET_LABELS.read_bytes()),
        },
        422,
        "model_format_unknown",
        "frozen GraphDef (.pb)",
    ),
    "custom-op tflite": (
        {
            "image": CAT,
            "model_file": ("bad.tflite", custom_op_model()),
            "label_file": ("l.txt", IMAGENET_LABELS.read_bytes()),
        },
        422,
        "model_op_not_allowed",
        "fake-op-double",
    ),
    "labels with wrong count": (
        {
            "image": CAT,
            "model_file": ("m.tflite", DEFAULT_MODEL.read_bytes()),
            "label_file": ("l.txt", b"cat\ndog\n"),
        },
        422,
        "labels_mismatch",
        "2 lines but the model has 1001 outputs",
    ),
    "labels not utf-8": (
        {
            "image": CAT,
            "model_file": ("m.tflite", DEFAULT_MODEL.read_bytes()),
            "label_file": ("l.txt", b"\xff\xfe\xfa" * 10),
        },
        422,
        "invalid_labels",
        "UTF-8",
    ),
    "model without labels": (
        {"image": CAT, "model_file": ("m.tflite", DEFAULT_MODEL.read_bytes())},
        400,
        "invalid_field",
        "label_file",
    ),
    "no image at all": ({"other": ("x", b"1")}, 400, "missing_field", "image"),
    "corrupt jpeg": (
        {"image": ("c.jpg", CAT[:600] + bytes(range(256)) * 40)},
        400,
        "invalid_image",
        "decoded",
    ),
    "decompression bomb": (
        {"image": ("bomb.png", _png("L", (12_000, 12_000)))},
        400,
        "invalid_image",
        "limit",
    ),
    "huge dimensions in the header": (
        {"image": ("huge.png", _huge_png_header())},
        400,
        "invalid_image",
        "limit",
    ),
    "truncated model": (
        {
            "image": CAT,
            "model_file": ("m.tflite", DEFAULT_MODEL.read_bytes()[:100_000]),
            "label_file": ("l.txt", IMAGENET_LABELS.read_bytes()),
        },
        422,
        "model_invalid",
        "",
    ),
    "absurdly many labels": (
        {
            "image": CAT,
            "model_file": ("m.tflite", DEFAULT_MODEL.read_bytes()),
            "label_file": ("l.txt", b"label\n" * 200_001),
        },
        422,
        "invalid_labels",
        "over 100000",
    ),
}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_bad_input_is_a_clear_json_error(base_url: str, case: str) -> None:
    files, status, code, words = CASES[case]
    response = classify(base_url, **files)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert words in error["message"]


def test_infer_errors_are_json_too(base_url: str) -> None:
    response = requests.post(
        base_url + "/infer", files={"image_file": ("x.txt", b"text")}, timeout=30
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_image"


def test_bad_parameters(base_url: str) -> None:
    for params, words in (
        ({"top_k": "abc"}, "top_k"),
        ({"top_k": "0"}, "between"),
        ({"input_std": "0"}, "input_std"),
        ({"input_mean": "nan"}, "finite"),
    ):
        response = requests.post(
            base_url + "/api/v1/classify", files={"image": CAT}, data=params, timeout=30
        )
        assert response.status_code == 400
        assert words in response.json()["error"]["message"]


def test_unknown_route_and_method_are_json(base_url: str) -> None:
    assert requests.get(base_url + "/nope", timeout=5).json()["error"]["code"] == "not_found"
    response = requests.get(base_url + "/api/v1/classify", timeout=5)
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_server_keeps_serving_after_all_bad_input(base_url: str) -> None:
    for files, *_ in CASES.values():
        classify(base_url, **files)
    response = classify(base_url, image=CAT)
    assert response.status_code == 200
    assert response.json()["predictions"][0]["label"] == "Egyptian cat"


def test_request_over_max_content_length_is_413() -> None:
    from frontend import create_app

    client = create_app({"MAX_CONTENT_LENGTH": 10_000}).test_client()
    response = client.post("/api/v1/classify", data={"image": (io.BytesIO(CAT), "c.jpg")})
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "payload_too_large"


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


CAT_IMAGE = Image.open(io.BytesIO(CAT)).convert("RGB")
NOISE = Image.effect_noise(CAT_IMAGE.size, 90).convert("RGB")
# Unusual but valid images: classified right, from their first frame where animated.
ODD_IMAGES = {
    "animated gif": _encoded(CAT_IMAGE, "GIF", save_all=True, append_images=[NOISE], duration=100),
    "animated webp": _encoded(
        CAT_IMAGE, "WEBP", save_all=True, append_images=[NOISE], duration=100, quality=95
    ),
    "16-bit png": _encoded(
        Image.fromarray(np.asarray(CAT_IMAGE.convert("L"), dtype=np.uint16) * 257), "PNG"
    ),
    "cmyk jpeg": _encoded(CAT_IMAGE.convert("CMYK"), "JPEG", quality=95),
}


@pytest.mark.parametrize("name", ODD_IMAGES)
def test_unusual_images_are_classified(base_url: str, name: str) -> None:
    answer = classify(base_url, image=(name, ODD_IMAGES[name]))
    assert answer.status_code == 200, answer.text
    top = [p["label"] for p in answer.json()["predictions"][:3]]
    assert "Egyptian cat" in top or "tabby" in top, (name, top)
