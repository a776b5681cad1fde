"""What a registration decides from the worker's description, in-process with fake workers
(tests/helpers.py): labels that would shift every answer refused, embeddings refused, the
preprocessing profile recognised, asked for or refused, and its range used for a float input;
the hourly registration limit, one count for every process."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from helpers import IMAGES, MODELS, fake_app, fake_model, labels_for

from frontend.dataplane.admission import RegistrationLog

CAT = (IMAGES / "cat.jpg").read_bytes()


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    flask_app, _ = fake_app(tmp_path, MODELS)
    yield flask_app.test_client()


def _register(client: FlaskClient, model: bytes, labels: bytes, **fields: str):
    return client.post(
        "/api/v1/models",
        data={
            "model": (io.BytesIO(model), "model.tflite"),
            "labels": (io.BytesIO(labels), "labels.txt"),
            **fields,
        },
        content_type="multipart/form-data",
    )


@pytest.mark.parametrize(
    "labels, classes, says",
    [
        (b"0 cat\n1 dog\n2 bird\n", 2, "its first line 'cat' is no background entry"),
        (labels_for(5), 6, "add the labels of the 1 outputs it lacks"),
        (labels_for(1024), 1000, "remove the 24 lines"),
    ],
)
def test_labels_that_would_shift_every_answer_are_refused(
    client: FlaskClient, labels: bytes, classes: int, says: str
) -> None:
    answer = _register(client, fake_model(classes=classes), labels)
    assert answer.status_code == 422
    error = answer.json["error"]
    assert error["code"] == "labels_mismatch"
    counts = f"{len(labels.splitlines())} lines but the model has {classes} outputs"
    assert counts in error["message"]
    assert says in error["message"]
    # an upload used once is refused the same way, before its photo is classified
    once = client.post(
        "/api/v1/classify",
        data={
            "image": (io.BytesIO(CAT), "cat.jpg"),
            "model_file": (io.BytesIO(fake_model(classes=classes)), "m.tflite"),
            "label_file": (io.BytesIO(labels), "l.txt"),
        },
    )
    assert once.status_code == 422 and once.json["error"]["code"] == "labels_mismatch"


def test_a_background_first_line_is_dropped_and_said(client: FlaskClient) -> None:
    answer = _register(client, fake_model(classes=2, answer=1), b"0 background\n1 cat\n2 dog\n")
    assert answer.status_code == 201
    assert answer.json["labels"]["alignment"] == "dropped_first_line"
    classified = client.post("/api/v1/classify", data={"image": (io.BytesIO(CAT), "c.jpg"),
                                                       "model": answer.json["id"]})  # fmt: skip
    assert classified.json["predictions"][0]["label"] == "dog"


def test_an_embedding_is_no_classifier(client: FlaskClient) -> None:
    answer = _register(client, fake_model(classes=1024, kind="features"), labels_for(1024))
    assert answer.status_code == 422
    error = answer.json["error"]
    assert error["code"] == "model_not_classifier"
    assert "1024 values, none negative and some over 1" in error["message"]
    assert "output_tensor" in error["message"]


def test_a_recognised_tool_gives_its_profile_and_its_range(client: FlaskClient) -> None:
    model = fake_model(classes=3, dtype="float32", tool="teachable_machine")
    answer = _register(client, model, labels_for(3))
    assert answer.status_code == 201, answer.json
    body = answer.json
    assert body["preprocessing"] == {
        "profile": "teachable_machine",
        "source": "recognized",
        "tool": "teachable_machine",
    }
    assert body["normalization"] == {"mode": "mean_std", "mean": 127.5, "std": 127.5}
    assert body["normalization_found"] == {"source": "profile", "profile": "teachable_machine"}
    classified = client.post("/api/v1/classify", data={"image": (io.BytesIO(CAT), "c.jpg"),
                                                       "model": body["id"]})  # fmt: skip
    assert classified.json["model"]["preprocessing"] == "teachable_machine"


def test_preprocessing_asked_for_wins_and_is_part_of_the_registration(
    client: FlaskClient,
) -> None:
    model = fake_model(classes=3, dtype="float32", tool="teachable_machine")
    recognised = _register(client, model, labels_for(3)).json
    asked = _register(client, model, labels_for(3), preprocessing="tf_poets")
    assert asked.status_code == 201  # another registration: the profile changes the answers
    body = asked.json
    assert body["id"] != recognised["id"]
    assert body["preprocessing"]["profile"] == "tf_poets"
    assert body["preprocessing"]["source"] == "given"
    assert body["normalization"] == {"mode": "mean_std", "mean": 128.0, "std": 128.0}
    assert body["options"]["preprocessing"] == "tf_poets"
    assert body["other_registrations"][0]["differs"] == {"preprocessing": None}


def test_a_profile_that_does_not_exist_is_400(client: FlaskClient) -> None:
    answer = _register(client, fake_model(), labels_for(3), preprocessing="squash")
    assert answer.status_code == 400
    assert (
        "preprocessing must be one of bilinear, tf_poets, teachable_machine, coral"
        in (answer.json["error"]["message"])
    )


def test_the_default_model_keeps_the_services_own_profile(client: FlaskClient) -> None:
    models = client.get("/api/v1/models").json["models"]
    (default,) = [m for m in models if m["default"]]
    assert default["preprocessing"]["profile"] == "bilinear"
    assert default["preprocessing"]["source"] == "service"


def test_the_registration_limit_is_shared_by_every_process(tmp_path: Path) -> None:
    """Two apps on one store, as two gunicorn processes are: the hour's count is one."""
    apps = [fake_app(tmp_path, MODELS, REGISTRATIONS_PER_HOUR=3)[0] for _ in range(2)]
    clients = [app.test_client() for app in apps]
    answers = [
        _register(clients[i % 2], fake_model(tag=str(i)), labels_for(3)).status_code
        for i in range(4)
    ]
    assert answers == [201, 201, 201, 429]
    refused = _register(clients[0], fake_model(tag="later"), labels_for(3))
    assert refused.status_code == 429 and refused.headers["Retry-After"]
    assert "3 registrations from this client within the hour" in refused.json["error"]["message"]


def test_the_registration_log_forgets_the_hour_before_and_stays_bounded(tmp_path: Path) -> None:
    log = RegistrationLog(tmp_path / "log.sqlite3")
    assert log.admit("a", 1, now=1000.0) is None
    assert log.admit("a", 1, now=1001.0) == pytest.approx(3599.0)
    assert log.admit("a", 1, now=1000.0 + 3600) is None  # the first one is an hour old
    log.MAX_ROWS = 50
    for address in range(500):  # many addresses within one hour
        assert log.admit(f"10.0.{address // 256}.{address % 256}", 1, now=5000.0) is None
    with sqlite3.connect(log.path) as db:
        assert db.execute("SELECT count(*) FROM registrations").fetchone()[0] <= 50
