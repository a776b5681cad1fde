"""The serving protocols' rules, in-process (the app from its factory with fake workers): the
Open Inference Protocol's error bodies, configuration, statistics, classification extension,
readiness and compressed bodies, its answers validated against the protocol's own OpenAPI file
(tests/specs/open_inference_rest.yaml, from kserve/open-inference-protocol), and TensorFlow
Serving's REST API as its api_rest.md writes it. tests/test_open_inference.py runs the stock
clients against a real server."""

from __future__ import annotations

import base64
import gzip
import io
import json
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from flask.testing import FlaskClient
from helpers import IMAGES, MODELS, ROOT, FakeTransport, fake_app, fake_model, labels_for
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from protocol import Overloaded

CAT = (IMAGES / "cat.jpg").read_bytes()
SPEC = yaml.safe_load((ROOT / "tests" / "specs" / "open_inference_rest.yaml").read_text())
SCHEMAS = Registry().with_resource("urn:oip", Resource.opaque(SPEC))


def conforms(body: Any, schema: str) -> None:
    """`body` is what the protocol's OpenAPI file says `schema` is."""
    reference = {"$ref": f"urn:oip#/components/schemas/{schema}"}
    Draft202012Validator(reference, registry=SCHEMAS).validate(body)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[FlaskClient]:
    app, _ = fake_app(tmp_path, MODELS, MAX_CONTENT_LENGTH=200_000)
    yield app.test_client()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _infer_body(*images: bytes, outputs: list[dict] | None = None) -> dict:
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "image",
                "datatype": "BYTES",
                "shape": [len(images)],
                "data": [_b64(i) for i in images],
            }
        ]
    }
    if outputs is not None:
        body["outputs"] = outputs
    return body


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("get", "/v2/models/default/nothing-here", 404),
        ("get", "/v2/nothing", 404),
        ("get", "/v1/models/default/nothing/here", 404),
        ("delete", "/v2/models/default", 405),
        ("get", "/v2/models/default/infer", 405),
        ("put", "/v1/models/default:predict", 405),
        ("get", "/v2/models/no-such-model/config", 404),
        ("get", "/v2/models/no-such-model/stats", 404),
    ],
)
def test_route_errors_have_the_protocols_body(
    client: FlaskClient, method: str, path: str, status: int
) -> None:
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert isinstance(response.json["error"], str) and response.json["error"]
    conforms(response.json, "inference_error_response")
    if status == 405:
        assert response.headers["Allow"]
    # the JSON API keeps its own body for the same refusal
    api = getattr(client, method)("/api/v1/nothing-here")
    assert api.status_code in (404, 405) and api.json["error"]["code"]


def test_a_body_over_the_limit_is_413_with_the_protocols_body(client: FlaskClient) -> None:
    response = client.post("/v2/models/default/infer", data=b"x" * 300_000)
    assert response.status_code == 413
    assert "over 200000 bytes" in response.json["error"]
    response = client.post("/v1/models/default:predict", data=b"x" * 300_000)
    assert response.status_code == 413 and isinstance(response.json["error"], str)


def test_retry_after_and_www_authenticate_are_kept(tmp_path: Path) -> None:
    class Busy(FakeTransport):
        def exchange(self, request, batchable=False):
            raise Overloaded("20 requests are already waiting for a worker")

    app, _ = fake_app(tmp_path, MODELS, API_TOKEN="secret")
    app.extensions["mobilenet"].transport = app.extensions["mobilenet"].runner.transport = Busy()
    client = app.test_client()
    for path in ("/v2/models/default", "/v1/models/default"):
        response = client.get(path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert isinstance(response.json["error"], str)
    response = client.post(
        "/v2/models/default/infer",
        json=_infer_body(CAT),
        headers={"Authorization": "Bearer secret"},
    )
    assert response.status_code == 503, response.json
    assert response.headers["Retry-After"] == "1"
    assert "already waiting" in response.json["error"]


# --- the Open Inference Protocol ------------------------------------------------------------


def test_metadata_follows_the_protocol(client: FlaskClient) -> None:
    server = client.get("/v2").json
    conforms(server, "metadata_server_response")
    assert {"binary_tensor_data", "classification", "statistics"} <= set(server["extensions"])
    metadata = client.get("/v2/models/default").json
    conforms(metadata, "metadata_model_response")
    assert metadata["platform"] == "tensorflow_tflite"
    assert metadata["parameters"]["input_dtype"] == "uint8"
    assert all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool)
        for v in metadata["parameters"].values()
    ), metadata["parameters"]


def test_config_and_statistics(client: FlaskClient) -> None:
    config = client.get("/v2/models/default/config").json
    assert config["platform"] == "tensorflow_tflite"
    assert {i["name"]: i["data_type"] for i in config["input"]} == {
        "image": "TYPE_STRING",
        "input": "TYPE_UINT8",
    }
    assert config["output"][0] == {
        "name": "probabilities",
        "data_type": "TYPE_FP32",
        "dims": [1001],
    }

    def stats() -> dict:
        (model,) = client.get("/v2/models/default/stats").json["model_stats"]
        return model

    before = stats()
    for count in (1, 2):
        assert (
            client.post("/v2/models/default/infer", json=_infer_body(*[CAT] * count)).status_code
            == 200
        )
    bad = client.post("/v2/models/default/infer", json=_infer_body(b"not an image"))
    assert bad.status_code == 400
    after = stats()
    assert after["inference_count"] - before["inference_count"] == 3
    assert after["execution_count"] - before["execution_count"] == 2
    success = after["inference_stats"]["success"]
    assert success["count"] - before["inference_stats"]["success"]["count"] == 2
    assert success["ns"] > before["inference_stats"]["success"]["ns"]
    fail = after["inference_stats"]["fail"]["count"] - before["inference_stats"]["fail"]["count"]
    assert fail == 1  # the call whose one image could not be read
    assert after["last_inference"] > 0


def test_the_classification_extension(tmp_path: Path) -> None:
    app, _ = fake_app(tmp_path, MODELS)
    client = app.test_client()
    labels = (MODELS / "imagenet_labels.txt").read_text().splitlines()
    body = _infer_body(
        CAT, CAT, outputs=[{"name": "probabilities", "parameters": {"classification": 3}}]
    )
    response = client.post("/v2/models/default/infer", json=body)
    assert response.status_code == 200, response.json
    conforms(response.json, "inference_response")
    (output,) = response.json["outputs"]
    assert output["datatype"] == "BYTES" and output["shape"] == [2, 3]
    score, index, label = output["data"][0].split(":", 2)
    # the fake workers put 0.9 on class 0 of every image
    assert (float(score), int(index), label) == (0.9, 0, labels[0])
    assert float(output["data"][1].split(":")[0]) < 0.9
    refused = client.post(
        "/v2/models/default/infer",
        json=_infer_body(CAT, outputs=[{"name": "labels", "parameters": {"classification": 2}}]),
    )
    assert refused.status_code == 400 and "classification" in refused.json["error"]


@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_compressed_bodies_are_read(client: FlaskClient, encoding: str) -> None:
    raw = json.dumps(_infer_body(CAT)).encode()
    packed = gzip.compress(raw) if encoding == "gzip" else zlib.compress(raw)
    response = client.post(
        "/v2/models/default/infer", data=packed, headers={"Content-Encoding": encoding}
    )
    assert response.status_code == 200, response.json
    conforms(response.json, "inference_response")
    tf = client.post(
        "/v1/models/default:predict",
        data=gzip.compress(json.dumps({"instances": [{"b64": _b64(CAT)}]}).encode()),
        headers={"Content-Encoding": "gzip"},
    )
    assert tf.status_code == 200 and len(tf.json["predictions"][0]) == 1001


@pytest.mark.parametrize(
    "headers, data, status, message",
    [
        ({"Content-Encoding": "gzip"}, b"not gzip at all", 400, "not valid gzip"),
        ({"Content-Encoding": "br"}, b"{}", 400, "gzip, deflate or identity"),
        (
            {"Content-Encoding": "gzip"},
            gzip.compress(b" " * 5_000_000, mtime=0),
            413,
            "inflates to over",
        ),
        ({"Content-Encoding": "gzip"}, gzip.compress(b"{}", mtime=0)[:-12], 400, "ends before"),
    ],
)
def test_bad_compressed_bodies_are_clear_errors(
    client: FlaskClient, headers: dict, data: bytes, status: int, message: str
) -> None:
    response = client.post("/v2/models/default/infer", data=data, headers=headers)
    assert response.status_code == status
    assert message in response.json["error"]


def test_a_model_is_ready_only_when_it_can_run(tmp_path: Path) -> None:
    app, _ = fake_app(tmp_path, MODELS)
    client = app.test_client()
    registered = client.post(
        "/api/v1/models",
        data={
            "model": (io.BytesIO(fake_model()), "m.tflite"),
            "labels": (io.BytesIO(labels_for(3)), "labels.txt"),
            "name": "mine",
        },
        content_type="multipart/form-data",
    )
    assert registered.status_code == 201, registered.json
    for name in ("default", "mine"):
        assert client.get(f"/v2/models/{name}/ready").json == {"name": name, "ready": True}

    plane = app.extensions["mobilenet"]
    plane.transport.sandboxed = False  # the sandbox went: only the default model runs
    plane.readiness.interval = 0
    assert client.get("/v2/models/default/ready").status_code == 200
    mine = client.get("/v2/models/mine/ready")
    assert (mine.status_code, mine.json) == (503, {"name": "mine", "ready": False})

    class Broken(FakeTransport):
        def exchange(self, request, batchable=False):
            raise Overloaded("no worker")

    plane.transport = plane.runner.transport = Broken()
    assert client.get("/v2/health/ready").status_code == 503
    default = client.get("/v2/models/default/ready")
    assert (default.status_code, default.json["ready"]) == (503, False)
    assert client.get("/v2/models/no-such-model/ready").status_code == 404
    # KServe's V1 client reads `ready` from the model's status, and 503 as not ready
    status = client.get("/v1/models/default")
    assert (status.status_code, status.json["ready"]) == (503, False)
    assert status.json["model_version_status"][0]["state"] == "LOADING"


def test_kserve_v1_reads_ready_from_the_status(client: FlaskClient) -> None:
    """What kserve's InferenceRESTClient (protocol v1) reads: `ready` in GET /v1/models/{m}."""
    status = client.get("/v1/models/default")
    assert status.status_code == 200
    assert status.json["name"] == "default" and status.json["ready"] is True
    assert status.json["model_version_status"][0]["state"] == "AVAILABLE"


# --- TensorFlow Serving ---------------------------------------------------------------------


def test_tf_serving_metadata_has_its_signature_def(client: FlaskClient) -> None:
    for path in (
        "default/metadata",
        "default/versions/1/metadata",
        "default/labels/stable/metadata",
    ):
        metadata = client.get(f"/v1/models/{path}").json
        assert metadata["model_spec"]["version"] == "1"
        signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
        (image,) = signature["inputs"].values()
        assert image["dtype"] == "DT_STRING"
        probabilities = signature["outputs"]["probabilities"]
        assert probabilities["dtype"] == "DT_FLOAT"
        assert [d["size"] for d in probabilities["tensor_shape"]["dim"]] == ["-1", "1001"]
    assert client.get("/v1/models/default/versions/2/metadata").status_code == 404
    assert client.get("/v1/models/default/labels/canary").status_code == 404


@pytest.mark.parametrize(
    "path", ["default:predict", "default/versions/1:predict", "default/labels/latest:predict"]
)
def test_tf_serving_rows_and_columns(client: FlaskClient, path: str) -> None:
    image = {"b64": _b64(CAT)}
    rows = client.post(f"/v1/models/{path}", json={"instances": [image, image]})
    assert rows.status_code == 200, rows.json
    predictions = np.array(rows.json["predictions"])
    for inputs in ([image, image], {"image_bytes": [image, image]}):
        columns = client.post(
            f"/v1/models/{path}", json={"signature_name": "serving_default", "inputs": inputs}
        )
        assert columns.status_code == 200, columns.json
        np.testing.assert_allclose(np.array(columns.json["outputs"]), predictions)


@pytest.mark.parametrize(
    "path, body, message",
    [
        ("default:predict", {"signature_name": "other", "instances": []}, "no signature named"),
        ("default:predict", {"instances": [], "inputs": []}, "either 'instances'"),
        ("default:predict", {"inputs": {"a": [], "b": []}}, "name one input"),
        ("default:regress", {"examples": [{"x": 1}]}, "no regression"),
        ("default/versions/1:regress", {"examples": [{"x": 1}]}, "no regression"),
    ],
)
def test_tf_serving_refusals_are_clear(
    client: FlaskClient, path: str, body: dict, message: str
) -> None:
    response = client.post(f"/v1/models/{path}", json=body)
    assert response.status_code == 400
    assert message in response.json["error"]


def test_bytes_elements_are_counted_from_the_shape_before_any_is_read(
    client: FlaskClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """30 M empty BYTES elements once cost 15.9 s of CPU before the 413: the shape alone now
    decides, and the elements are never walked."""
    from frontend.http import open_inference

    walked: list[int] = []
    real = open_inference._bytes_elements
    monkeypatch.setattr(
        open_inference, "_bytes_elements", lambda *a: walked.append(a[1]) or real(*a)
    )
    count = 40_000  # 160 KB of empty elements, within the body limit
    header = json.dumps(
        {"inputs": [{"name": "image", "shape": [count], "datatype": "BYTES",
                     "parameters": {"binary_data_size": 4 * count}}]}
    ).encode()  # fmt: skip
    answer = client.post(
        "/v2/models/default/infer",
        data=header + bytes(4 * count),
        headers={"Inference-Header-Content-Length": str(len(header))},
        content_type="application/octet-stream",
    )
    assert answer.status_code == 413, answer.json
    assert (
        answer.json["code"] == "too_many_images" and "MAX_IMAGES_PER_CALL" in answer.json["error"]
    )
    assert walked == []
    assert (
        client.post(
            "/v2/models/default/infer",
            json=_infer_body(IMAGES.joinpath("cat.jpg").read_bytes()),
        ).status_code
        == 200
    )
    assert walked == []  # JSON elements are base64 strings, not walked here
