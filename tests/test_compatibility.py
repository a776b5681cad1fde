"""Every retrained MobileNet its users have (issue 12), each made here from a real model: Keras
files as Teachable Machine and Keras 3 write them (tests/retrain_keras.py), and the graphs
TF-for-Poets, quantize_graph and retrain.py leave, made from the frozen ImageNet MobileNet V2
(tests/make_variants.py). Each is registered without a word more than its users would say and
must give its own framework's top-1 on every photo; numbered label files lose their numbers;
errors speak in plain numbers; draft decoding agrees with a full decode."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from helpers import (
    BIRD_LABELS,
    BIRD_MODEL,
    FROZEN_MODEL,
    IMAGENET_LABELS,
    IMAGES,
    Server,
    start_gunicorn,
)
from tflite_fixtures import vector_input_model

PHOTOS = sorted(p.name for p in IMAGES.glob("*.jpg"))
MIN_MARGIN = 0.1  # images where Keras itself is nearly undecided prove nothing either way
AGREEMENT = 0.97  # of photos whose draft-decoded top-1 is the full decode's, at every size


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """Room for many registrations, and for converting Keras files on a slow machine."""
    env = {"REGISTRATIONS_PER_HOUR": "200", "UPLOAD_TIMEOUT": "120"}
    server = start_gunicorn(tmp_path_factory.mktemp("compatibility"), env)
    yield server
    server.stop()


def register(url: str, model: Path, labels: bytes, **fields: str) -> requests.Response:
    return requests.post(
        url + "/api/v1/models",
        files={"model": (model.name, model.read_bytes()), "labels": ("labels.txt", labels)},
        data=fields,
        timeout=300,
    )


def classify(url: str, model_id: str, photo: Path) -> dict:
    response = requests.post(
        f"{url}/api/v1/models/{model_id}/classify", files={"image": photo.read_bytes()}, timeout=120
    )
    assert response.status_code == 200, response.text
    return response.json()


def error(response: requests.Response) -> dict:
    return response.json()["error"]


IMAGENET = IMAGENET_LABELS.read_bytes()


# --- Keras files ------------------------------------------------------------------------------


# The retrained model tells colours of noise apart: natural calibration photos cannot tell its
# input range (tests/test_retrained_keras.py), so it is given.
PM1 = {"input_mean": "127.5", "input_std": "127.5"}


@pytest.mark.parametrize("artifact", ["teachable_machine.h5", "model.keras"])
def test_keras_files_are_converted_and_give_keras_top1(
    service: Server, retrained: Path, artifact: str
) -> None:
    labels_file = (retrained / "labels.txt").read_bytes()
    response = register(service.url, retrained / artifact, labels_file, **PM1)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["format"] == "graphdef"  # what the workers run: no Keras after registration
    assert body["source"]["format"] == "keras"
    assert body["source"]["sha256"] != body["sha256"]
    assert (body["input"]["height"], body["input"]["width"]) == (160, 160)
    assert body["normalization"] == {"mode": "mean_std", "mean": 127.5, "std": 127.5}
    labels = (retrained / "labels.txt").read_text().split()
    keras = json.loads((retrained / "keras.json").read_text())
    checked = 0
    for name, probabilities in keras.items():
        ordered = sorted(probabilities, reverse=True)
        if ordered[0] - ordered[1] < MIN_MARGIN:
            continue
        answer = classify(service.url, body["id"], retrained / "images" / name)
        best = int(np.argmax(probabilities))
        assert answer["predictions"][0]["label"] == labels[best], (name, probabilities, answer)
        served = {p["index"]: p["probability"] for p in answer["predictions"]}
        assert served == pytest.approx(dict(enumerate(probabilities)), abs=0.02)
        assert answer["model"]["source_format"] == "keras"
        checked += 1
    assert checked >= 4


def test_a_keras_file_with_two_outputs_runs_the_one_named(service: Server, retrained: Path) -> None:
    labels_file = (retrained / "labels.txt").read_bytes()
    unnamed = register(service.url, retrained / "two_heads.keras", labels_file, **PM1)
    assert unnamed.status_code == 422
    assert error(unnamed)["code"] == "model_tensor_not_found"
    assert "2 outputs (brightness, colour_head_probs)" in error(unnamed)["message"]
    named = register(
        service.url,
        retrained / "two_heads.keras",
        labels_file,
        output_tensor="colour_head_probs",
        **PM1,
    )
    assert named.status_code == 201, named.text
    assert named.json()["output"]["classes"] == 3
    labels = (retrained / "labels.txt").read_text().split()
    keras = json.loads((retrained / "keras.json").read_text())
    name, probabilities = max(keras.items(), key=lambda item: max(item[1]))
    answer = classify(service.url, named.json()["id"], retrained / "images" / name)
    assert answer["predictions"][0]["label"] == labels[int(np.argmax(probabilities))]


def test_an_embedding_is_refused_naming_what_to_do(service: Server) -> None:
    """The ImageNet graph cut at its global pool: 1280 features, no classifier."""
    features = register(
        service.url,
        FROZEN_MODEL,
        b"".join(b"feature %d\n" % i for i in range(1280)),
        output_tensor="MobilenetV2/Logits/AvgPool",
    )
    assert features.status_code == 422
    assert error(features)["code"] == "model_not_classifier"
    assert "1280 values" in error(features)["message"]


def test_a_keras_file_uploaded_once_is_converted_too(service: Server, retrained: Path) -> None:
    """The seed's /infer with a Teachable Machine export and its numbered labels."""
    keras = json.loads((retrained / "keras.json").read_text())
    name, probabilities = max(keras.items(), key=lambda item: max(item[1]))
    labels = (retrained / "labels.txt").read_text().split()
    numbered = "".join(f"{i} {label}\n" for i, label in enumerate(labels)).encode()
    response = requests.post(
        service.url + "/infer",
        files={
            "image_file": (retrained / "images" / name).read_bytes(),
            "model_file": ("keras_model.h5", (retrained / "teachable_machine.h5").read_bytes()),
            "label_file": ("labels.txt", numbered),
        },
        data=PM1,
        timeout=300,
    )
    assert response.status_code == 200, response.text
    assert f"Detected <b>{labels[int(np.argmax(probabilities))]}</b>" in response.text


@pytest.mark.parametrize(
    "artifact, words",
    [("lambda.h5", "Lambda 'lambda' run Python code"), ("custom_layer.keras", "custom objects")],
)
def test_keras_files_that_run_their_own_code_are_refused(
    service: Server, retrained: Path, artifact: str, words: str
) -> None:
    response = register(service.url, retrained / artifact, (retrained / "labels.txt").read_bytes())
    assert response.status_code == 422, response.text
    assert error(response)["code"] == "model_op_not_allowed"
    assert words in error(response)["message"]
    assert "TensorFlow Lite" in error(response)["message"]  # and what to export instead


# --- graphs -----------------------------------------------------------------------------------


def reference_top1(variants: Path, variant: str) -> dict[str, int]:
    reference = json.loads((variants / "reference.json").read_text())[variant]
    return {photo: int(np.argmax(p)) for photo, p in reference.items()}


def assert_matches_reference(url: str, model_id: str, variants: Path, variant: str) -> None:
    for photo, best in reference_top1(variants, variant).items():
        answer = classify(url, model_id, IMAGES / photo)
        assert answer["predictions"][0]["index"] == best, (variant, photo, answer)


def test_the_graph_decides_its_input_size(service: Server, variants: Path) -> None:
    """TF-for-Poets' optimize_for_inference at 128 px: no shape on the input, and only 128 px
    runs (a 4x4 pool and a Squeeze downstream). Its normalisation is named: at 128 px an
    ImageNet model's answers say little about the range it was trained on."""
    response = register(
        service.url, variants / "optimized_128.pb", IMAGENET, input_mean="127.5", input_std="127.5"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["input"]["height"], body["input"]["width"]) == (128, 128)
    assert body["input"]["size_source"] == "shapes"
    assert_matches_reference(service.url, body["id"], variants, "optimized_128.pb")


def test_input_size_is_given_when_nothing_decides_it(service: Server, variants: Path) -> None:
    default = register(service.url, variants / "any_size.pb", IMAGENET)
    assert default.status_code == 201, default.text
    assert default.json()["input"]["size_source"] == "default"
    assert default.json()["input"]["height"] == 224
    assert_matches_reference(service.url, default.json()["id"], variants, "any_size.pb")
    given = register(service.url, variants / "any_size.pb", IMAGENET, input_size="160")
    assert given.status_code == 201, given.text
    body = given.json()
    assert (body["input"]["height"], body["input"]["width"], body["input"]["size_source"]) == (
        160,
        160,
        "given",
    )
    # The same bytes with another option are another entry, and the answer says so.
    assert body["other_registrations"] == [
        {"id": default.json()["id"], "name": "any_size.pb", "differs": {"input_size": None}}
    ]
    answer = classify(service.url, body["id"], IMAGES / "grace_hopper.jpg")
    assert answer["predictions"][0]["label"] == "military uniform"


@pytest.mark.parametrize("variant", ["weights_quantized.pb", "eightbit.pb"])
def test_quantize_graph_output_runs(service: Server, variants: Path, variant: str) -> None:
    response = register(service.url, variants / variant, IMAGENET)
    assert response.status_code == 201, response.text
    assert_matches_reference(service.url, response.json()["id"], variants, variant)


def test_a_retrain_graph_is_cut_at_its_float_input(service: Server, variants: Path) -> None:
    """retrain.py's graphs take JPEG bytes at DecodeJpeg/contents and floats at Mul: named, Mul
    becomes the input and DecodeJpeg, upstream of it, is cut away, unrun and unallowed."""
    unnamed = register(service.url, variants / "retrain_jpeg.pb", IMAGENET)
    assert unnamed.status_code == 422, unnamed.text
    assert "'DecodeJpeg/contents' (Placeholder) is not a float tensor" in error(unnamed)["message"]
    named = register(service.url, variants / "retrain_jpeg.pb", IMAGENET, input_tensor="Mul:0")
    assert named.status_code == 201, named.text
    body = named.json()
    assert body["input"]["name"] == "Mul" and body["input"]["height"] == 224
    assert body["normalization"] == {"mode": "mean_std", "mean": 127.5, "std": 127.5}
    assert_matches_reference(service.url, body["id"], variants, "retrain_jpeg.pb")


def test_normalisation_is_detected_and_a_given_one_wins(service: Server, variants: Path) -> None:
    """A model made to take [0, 1] (TF-Hub-era retrain.py graphs): detected from the
    calibration photos, with every candidate's score in the manifest."""
    detected = register(service.url, variants / "unit_range.pb", IMAGENET)
    assert detected.status_code == 201, detected.text
    body = detected.json()
    assert body["normalization"] == {"mode": "mean_std", "mean": 0.0, "std": 255.0}
    found = body["normalization_found"]
    assert found["source"] == "detected" and found["chosen"] == "[0, 1]"
    # how sure: a clear margin over the runner-up, and no worse on most photos one by one
    assert found["runner_up"] == "[-1, 1]" and found["margin"] >= 0.05
    no_worse, photos = map(int, found["photos_no_worse"].split(" of "))
    assert photos == 8 and no_worse >= 6
    assert set(found["scores"]) == {"[-1, 1]", "[0, 1]", "[0, 255]", "Caffe means"}
    assert found["scores"]["[0, 1]"]["score"] > found["scores"]["[-1, 1]"]["score"]
    assert_matches_reference(service.url, body["id"], variants, "unit_range.pb")
    given = register(
        service.url, variants / "unit_range.pb", IMAGENET, input_mean="127.5", input_std="127.5"
    )
    assert given.status_code == 201, given.text
    assert given.json()["normalization"] == {"mode": "mean_std", "mean": 127.5, "std": 127.5}
    assert given.json()["normalization_found"] == {"source": "given"}
    assert given.json()["other_registrations"][0]["differs"] == {
        "normalization": {"mode": "model_default"}
    }
    again = register(service.url, variants / "unit_range.pb", IMAGENET)
    assert again.status_code == 200 and again.json()["id"] == body["id"]


# --- labels and errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "numbering", ["{i} {label}", "{i}:{label}", "{i}: {label}"], ids=["tm", "slim", "coral"]
)
def test_numbered_labels_answer_bare_labels(service: Server, numbering: str) -> None:
    lines = BIRD_LABELS.read_text().splitlines()
    numbered = "".join(numbering.format(i=i, label=label) + "\n" for i, label in enumerate(lines))
    response = requests.post(
        service.url + "/infer",
        files={
            "image_file": (IMAGES / "parrot.jpg").read_bytes(),
            "model_file": (BIRD_MODEL.name, BIRD_MODEL.read_bytes()),
            "label_file": ("labels.txt", numbered.encode()),
        },
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.text.startswith("Detected <b>Ara macao (Scarlet Macaw)</b>")


def test_errors_are_plain_numbers(service: Server, tmp_path: Path) -> None:
    model = tmp_path / "vector.tflite"
    model.write_bytes(vector_input_model())
    response = register(service.url, model, b"a\nb\n")
    assert response.status_code == 422, response.text
    assert error(response)["message"] == "input 'input' has shape [1, 8], not [n,h,w,3]"


# --- draft decoding ---------------------------------------------------------------------------


def test_draft_decoding_agrees_with_a_full_decode(variants: Path) -> None:
    """JPEGs are decoded at reduced scale no smaller than 3x the model's input: the top-1 of
    the any-size ImageNet graph at 128 to 224 px is the full decode's on at least 0.97 of the
    photos (the test photos, 12 MP versions and 12 MP mosaics of them)."""
    draft = json.loads((variants / "draft.json").read_text())
    for side, rows in draft.items():
        agreeing = sum(served == full for served, full in rows.values())
        assert agreeing / len(rows) >= AGREEMENT, (side, rows)
