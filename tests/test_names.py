"""One name, everywhere; unique names; renames; bytes that are no model refused before any
worker sees them. In-process: the app from its factory with fake workers (tests/helpers.py)."""

from __future__ import annotations

import base64
import gzip
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from helpers import IMAGES, MODELS, FakeTransport, fake_app, fake_model, labels_for, zip_of

CAT = (IMAGES / "cat.jpg").read_bytes()
CATDOG = fake_model(classes=3, answer=2)  # answers "class 2"
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[FlaskClient, FakeTransport]]:
    flask_app, transport = fake_app(tmp_path, MODELS, ADMIN_TOKEN="admin-secret")
    yield flask_app.test_client(), transport


ADMIN = {"Authorization": "Bearer admin-secret"}


def _register(client: FlaskClient, model: bytes, **fields: str):
    return client.post(
        "/api/v1/models",
        data={
            "model": (io.BytesIO(model), fields.pop("filename", "model.tflite")),
            "labels": (io.BytesIO(labels_for(3)), "labels.txt"),
            **fields,
        },
        headers=ADMIN,
        content_type="multipart/form-data",
    )


def _image(field: str = "image") -> dict:
    return {field: (io.BytesIO(CAT), "cat.jpg")}


def test_a_name_works_wherever_an_id_does(app) -> None:
    client, _ = app
    created = _register(client, CATDOG, name="catdog")
    assert created.status_code == 201, created.json
    model_id = created.json["id"]
    assert created.json["name"] == "catdog"

    answers = [
        client.post("/api/v1/models/catdog/classify", data=_image()),
        client.post("/api/v1/classify", data={**_image(), "model": "catdog"}),
    ]
    for answer in answers:
        assert answer.status_code == 200, answer.json
        assert answer.json["model"]["id"] == model_id
        assert answer.json["predictions"][0]["label"] == "class 2"
    infer = client.post("/infer", data={**_image("image_file"), "model": "catdog"})
    assert infer.status_code == 200 and b"Detected <b>class 2</b>" in infer.data
    explained = client.post("/api/v1/explain", data={**_image(), "model": "catdog", "grid": "3"})
    assert explained.status_code == 200, explained.json
    assert explained.json["model"]["id"] == model_id
    assert explained.json["label"]["label"] == "class 2"
    assert client.get("/api/v1/models/catdog").json["id"] == model_id

    assert client.get("/v2/models/catdog").json["parameters"]["id"] == model_id
    v2 = client.post(
        "/v2/models/catdog/infer",
        json={
            "inputs": [
                {
                    "name": "image",
                    "datatype": "BYTES",
                    "shape": [1],
                    "data": [base64.b64encode(CAT).decode()],
                }
            ],
            "outputs": [{"name": "labels"}],
        },
    )
    assert v2.status_code == 200, v2.json
    assert v2.json["outputs"][0]["data"][0] == "class 2"
    status = client.get("/v1/models/catdog").json
    assert status["model_version_status"][0]["state"] == "AVAILABLE"
    tf_serving = client.post(
        "/v1/models/catdog:classify",
        json={"examples": [{"image": {"b64": base64.b64encode(CAT).decode()}}], "top_k": 1},
    )
    assert tf_serving.json["results"][0][0][0] == "class 2"


def test_a_name_another_model_holds_is_409_naming_the_holder(app) -> None:
    client, _ = app
    holder = _register(client, CATDOG, name="catdog").json["id"]
    taken = _register(client, fake_model(classes=3, answer=1), name="catdog")
    assert taken.status_code == 409
    assert taken.json["error"]["code"] == "model_name_taken"
    assert holder in taken.json["error"]["message"]
    names = [m["name"] for m in client.get("/api/v1/models").json["models"]]
    assert names.count("catdog") == 1 and len(names) == 2  # the default and catdog, no more


def test_the_same_model_under_another_name_is_renamed_and_says_so(app) -> None:
    client, _ = app
    first = _register(client, CATDOG, name="catdog").json
    again = _register(client, CATDOG, name="catdog-api")
    assert again.status_code == 200
    assert again.json["id"] == first["id"]
    assert again.json["name"] == "catdog-api" and again.json["renamed_from"] == "catdog"
    assert client.get("/api/v1/models/catdog").status_code == 404
    assert client.get("/api/v1/models/catdog-api").json["id"] == first["id"]
    unnamed = _register(client, CATDOG)  # no name asked: the entry as it is
    assert unnamed.status_code == 200
    assert unnamed.json["name"] == "catdog-api" and "renamed_from" not in unnamed.json


def test_names_made_of_file_names_are_made_free(app) -> None:
    client, _ = app
    first = _register(client, fake_model(tag="a"), filename="keras_model.h5")
    second = _register(client, fake_model(tag="b"), filename="keras_model.h5")
    odd = _register(client, fake_model(tag="c"), filename="my model (1).tflite")
    assert [r.status_code for r in (first, second, odd)] == [201, 201, 201]
    assert first.json["name"] == "keras_model.h5"
    assert second.json["name"] == "keras_model-2.h5"
    assert odd.json["name"] == "my-model-1-.tflite"


@pytest.mark.parametrize("name", ["has space", "a" * 65, "f" * 64, "default", "-dash", "x/y"])
def test_a_name_that_is_no_name_is_400(app, name: str) -> None:
    client, _ = app
    answer = _register(client, CATDOG, name=name)
    assert answer.status_code == 400 and answer.json["error"]["code"] == "invalid_field"
    assert "not a model name" in answer.json["error"]["message"]


def test_the_admin_renames_a_model(app) -> None:
    client, _ = app
    model_id = _register(client, CATDOG, name="catdog").json["id"]
    _register(client, fake_model(tag="other"), name="other")
    assert client.patch("/api/v1/models/catdog", json={"name": "pets"}).status_code == 401
    renamed = client.patch("/api/v1/models/catdog", json={"name": "pets"}, headers=ADMIN)
    assert renamed.status_code == 200
    assert renamed.json["id"] == model_id and renamed.json["name"] == "pets"
    assert renamed.json["renamed_from"] == "catdog"
    by_form = client.patch(f"/api/v1/models/{model_id}", data={"name": "pets-2"}, headers=ADMIN)
    assert by_form.status_code == 200 and by_form.json["name"] == "pets-2"
    taken = client.patch("/api/v1/models/pets-2", json={"name": "other"}, headers=ADMIN)
    assert taken.status_code == 409 and taken.json["error"]["code"] == "model_name_taken"
    bad = client.patch("/api/v1/models/pets-2", json={"name": "no good"}, headers=ADMIN)
    assert bad.status_code == 400
    default = client.patch("/api/v1/models/default", json={"name": "mine"}, headers=ADMIN)
    assert default.status_code == 409 and default.json["error"]["code"] == "model_is_default"
    assert client.post("/api/v1/models/pets-2/classify", data=_image()).status_code == 200


NOT_MODELS = {
    "pdf": PDF,
    "jpeg": CAT,
    "text": labels_for(3),
    "zip of photos": zip_of({"photos/cat.jpg": CAT}),
    "gzip of a pdf": gzip.compress(PDF),
    "json": json.dumps({"model": "no"}).encode(),
}


@pytest.mark.parametrize("kind", NOT_MODELS)
def test_bytes_that_are_no_model_are_refused_before_any_worker(app, kind: str) -> None:
    client, transport = app
    client.get("/api/v1/models")  # the default model registered: its frames are not counted
    sent = len(transport.frames)
    for answer in (
        _register(client, NOT_MODELS[kind], filename="model.pb"),
        client.post(
            "/api/v1/classify",
            data={
                **_image(),
                "model_file": (io.BytesIO(NOT_MODELS[kind]), "model.pb"),
                "label_file": (io.BytesIO(labels_for(3)), "labels.txt"),
            },
        ),
    ):
        assert answer.status_code == 422, answer.json
        error = answer.json["error"]
        assert error["code"] == "model_format_unknown"
        assert "TensorFlow Lite" in error["message"] and "SavedModel" in error["message"]
    assert len(transport.frames) == sent  # no worker was asked
