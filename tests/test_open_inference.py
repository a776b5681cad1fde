"""The Open Inference Protocol (KServe V2) spoken to a real server by a client nobody here wrote:
tritonclient[http] from PyPI, sync and asyncio, in JSON and with the binary-tensor,
classification, configuration and statistics extensions, its errors and compressed bodies."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator

import numpy as np
import pytest
import requests
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from helpers import DEFAULT_MODEL, FROZEN_MODEL, IMAGENET_LABELS, IMAGES, start_gunicorn
from tritonclient.utils import InferenceServerException

from frontend.images import prepare_image
from tools.server import Server

PHOTOS = {"cat.jpg": "Egyptian cat", "grace_hopper.jpg": "military uniform", "parrot.jpg": "macaw"}
DEFAULT_NAME = DEFAULT_MODEL.name
FROZEN_NAME = "imagenet-frozen"


@pytest.fixture(scope="module")
def v2_server(tmp_path_factory: pytest.TempPathFactory, register) -> Iterator[Server]:
    """A server of its own, with the frozen GraphDef registered under a name."""
    server = start_gunicorn(tmp_path_factory.mktemp("v2"), {"MAX_JSON_BYTES": str(4 << 20)})
    response = register(server.url, FROZEN_MODEL, IMAGENET_LABELS, name=FROZEN_NAME)
    assert response.status_code == 201, response.text
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(v2_server: Server) -> Iterator[triton.InferenceServerClient]:
    with triton.InferenceServerClient(v2_server.url.removeprefix("http://")) as client:
        yield client


def _binary_request(tensor: dict, data: bytes) -> tuple[bytes, dict[str, str]]:
    tensor = {**tensor, "parameters": {"binary_data_size": len(data)}}
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + data, {"Inference-Header-Content-Length": str(len(header))}


def _images(*names: str) -> np.ndarray:
    return np.array([(IMAGES / n).read_bytes() for n in names], dtype=np.object_)


def _labels(result: triton.InferResult) -> list[str]:
    labels = result.as_numpy("labels")
    return [v.decode() if isinstance(v, bytes) else str(v) for v in labels[:, 0]]


def test_health_and_server_metadata(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live()
    assert client.is_server_ready()
    metadata = client.get_server_metadata()
    assert metadata["name"] == "mobilenet-service"
    assert "binary_tensor_data" in metadata["extensions"]


@pytest.mark.parametrize("name", [DEFAULT_NAME, "default"])
def test_default_model_metadata(client: triton.InferenceServerClient, name: str) -> None:
    assert client.is_model_ready(name)
    metadata = client.get_model_metadata(name)
    assert metadata["name"] == name and metadata["versions"] == ["1"]
    assert metadata["platform"] == "tensorflow_tflite"
    inputs = {i["name"]: i for i in metadata["inputs"]}
    assert inputs["image"] == {"name": "image", "datatype": "BYTES", "shape": [-1]}
    assert inputs["input"] == {"name": "input", "datatype": "UINT8", "shape": [-1, 224, 224, 3]}
    outputs = {o["name"]: o for o in metadata["outputs"]}
    assert outputs["probabilities"]["shape"] == [-1, 1001]
    assert outputs["labels"]["datatype"] == "BYTES"


def test_registered_model_by_name_and_by_id(client: triton.InferenceServerClient) -> None:
    by_name = client.get_model_metadata(FROZEN_NAME)
    assert by_name["platform"] == "tensorflow_graphdef"
    assert by_name["inputs"][1]["datatype"] == "FP32"
    by_id = client.get_model_metadata(by_name["parameters"]["id"])
    assert by_id["inputs"] == by_name["inputs"]
    assert client.get_model_metadata(FROZEN_NAME, model_version="1")["versions"] == ["1"]


def test_unknown_model_and_version_are_not_found(client: triton.InferenceServerClient) -> None:
    assert not client.is_model_ready("no-such-model")
    with pytest.raises(InferenceServerException, match="no model with id or name"):
        client.get_model_metadata("no-such-model")
    with pytest.raises(InferenceServerException, match="only version 1"):
        client.get_model_metadata(DEFAULT_NAME, model_version="2")


def test_the_clients_errors_print(client: triton.InferenceServerClient) -> None:
    """tritonclient prints an error as "[status] message": the message must be a string."""
    for call in (
        lambda: client.get_model_config("no-such-model"),
        lambda: client.get_inference_statistics("no-such-model"),
        lambda: client.unload_model(DEFAULT_NAME),  # no repository extension: no such route
    ):
        with pytest.raises(InferenceServerException) as raised:
            call()
        printed = str(raised.value)
        assert printed.startswith("[") and len(printed) > 10, printed


def test_configuration_and_statistics(client: triton.InferenceServerClient) -> None:
    config = client.get_model_config(FROZEN_NAME)
    assert config["platform"] == "tensorflow_graphdef"
    assert config["input"][1] == {"name": "input", "data_type": "TYPE_FP32", "dims": [224, 224, 3]}

    def counted() -> dict:
        (stats,) = client.get_inference_statistics(FROZEN_NAME)["model_stats"]
        return stats

    before = counted()
    infer_input = triton.InferInput("image", [2], "BYTES")
    infer_input.set_data_from_numpy(_images("cat.jpg", "parrot.jpg"))
    client.infer(FROZEN_NAME, [infer_input])
    after = counted()
    assert after["inference_count"] - before["inference_count"] == 2
    assert after["execution_count"] - before["execution_count"] == 1
    assert after["last_inference"] >= before["last_inference"]


def test_the_classification_extension(client: triton.InferenceServerClient) -> None:
    infer_input = triton.InferInput("image", [2], "BYTES")
    infer_input.set_data_from_numpy(_images("cat.jpg", "parrot.jpg"))
    wanted = triton.InferRequestedOutput("probabilities", class_count=3)
    result = client.infer(DEFAULT_NAME, [infer_input], outputs=[wanted])
    classes = result.as_numpy("probabilities")
    assert classes.shape == (2, 3)
    tops = [row[0].decode().split(":", 2) for row in classes]
    assert [label for _, _, label in tops] == ["Egyptian cat", "macaw"]
    labels = IMAGENET_LABELS.read_text().splitlines()
    assert all(labels[int(index)] == label for _, index, label in tops)
    assert all(0.5 < float(score) <= 1 for score, _, _ in tops)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_requests(client: triton.InferenceServerClient, algorithm: str) -> None:
    infer_input = triton.InferInput("image", [1], "BYTES")
    infer_input.set_data_from_numpy(_images("grace_hopper.jpg"))
    result = client.infer(DEFAULT_NAME, [infer_input], request_compression_algorithm=algorithm)
    assert _labels(result) == ["military uniform"]


def test_the_asyncio_client(v2_server: Server) -> None:
    async def run() -> tuple[bool, list[str], dict]:
        url = v2_server.url.removeprefix("http://")
        async with triton_aio.InferenceServerClient(url) as aio:
            ready = await aio.is_model_ready(FROZEN_NAME)
            infer_input = triton_aio.InferInput("image", [3], "BYTES")
            infer_input.set_data_from_numpy(_images(*PHOTOS))
            result = await aio.infer(FROZEN_NAME, [infer_input])
            with pytest.raises(InferenceServerException, match="no model"):
                await aio.get_model_config("no-such-model")
            return ready, _labels(result), await aio.get_model_config(FROZEN_NAME)

    ready, labels, config = asyncio.run(run())
    assert ready and labels == list(PHOTOS.values())
    assert config["name"] == FROZEN_NAME


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_encoded_images_as_a_batch(
    client: triton.InferenceServerClient, binary: bool
) -> None:
    names = list(PHOTOS)
    images = _images(*names)
    if not binary:  # JSON carries strings: an image goes as its base64
        images = np.array([base64.b64encode(i).decode() for i in images], dtype=np.object_)
    infer_input = triton.InferInput("image", [len(names)], "BYTES")
    infer_input.set_data_from_numpy(images, binary_data=binary)
    outputs = [
        triton.InferRequestedOutput(name, binary_data=binary)
        for name in ("labels", "scores", "probabilities")
    ]
    result = client.infer(DEFAULT_NAME, [infer_input], outputs=outputs, request_id="batch-1")
    assert _labels(result) == list(PHOTOS.values())
    assert result.get_response()["id"] == "batch-1"
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (3, 1001) and probabilities.dtype == np.float32
    # The quantized model's softmax in steps of 1/256: the small classes round to 0.
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=0.06)
    scores = result.as_numpy("scores")
    assert scores.shape == (3, 5)
    np.testing.assert_allclose(scores[:, 0], probabilities.max(axis=1), atol=1e-5)


def test_infer_without_requested_outputs_answers_all_in_binary(
    client: triton.InferenceServerClient,
) -> None:
    infer_input = triton.InferInput("image", [1], "BYTES")
    infer_input.set_data_from_numpy(_images("parrot.jpg"))
    result = client.infer("default", [infer_input], parameters={"top_k": 2})
    assert _labels(result) == ["macaw"]
    assert result.as_numpy("labels").shape == (1, 2)
    assert {o["name"] for o in result.get_response()["outputs"]} == {
        "probabilities",
        "labels",
        "scores",
        "errors",
    }
    assert result.as_numpy("errors").tolist() == [b""]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_a_prepared_uint8_tensor(client: triton.InferenceServerClient, binary: bool) -> None:
    pixels = np.stack([prepare_image((IMAGES / n).read_bytes(), (224, 224)) for n in PHOTOS])
    infer_input = triton.InferInput("input", list(pixels.shape), "UINT8")
    infer_input.set_data_from_numpy(pixels, binary_data=binary)
    result = client.infer(
        DEFAULT_NAME, [infer_input], outputs=[triton.InferRequestedOutput("labels", binary)]
    )
    assert _labels(result) == list(PHOTOS.values())


def test_infer_a_prepared_fp32_tensor_on_a_float_graph(
    client: triton.InferenceServerClient,
) -> None:
    """The frozen GraphDef takes (x - 127.5) / 127.5: the tensor as the model takes it."""
    pixels = np.stack([prepare_image((IMAGES / n).read_bytes(), (224, 224)) for n in PHOTOS])
    tensor = ((pixels.astype(np.float32) - 127.5) / 127.5).astype(np.float32)
    infer_input = triton.InferInput("input", list(tensor.shape), "FP32")
    infer_input.set_data_from_numpy(tensor)
    result = client.infer(FROZEN_NAME, [infer_input])
    assert _labels(result) == list(PHOTOS.values())
    metadata = client.get_model_metadata(FROZEN_NAME)
    assert metadata["parameters"]["input_mean"] == "127.5,127.5,127.5"
    assert metadata["parameters"]["input_std"] == "127.5,127.5,127.5"


def test_an_image_that_cannot_be_read_fails_only_its_own_row(
    client: triton.InferenceServerClient,
) -> None:
    infer_input = triton.InferInput("image", [3], "BYTES")
    infer_input.set_data_from_numpy(
        np.array(
            [
                (IMAGES / "cat.jpg").read_bytes(),
                b"not an image",
                (IMAGES / "parrot.jpg").read_bytes(),
            ],
            dtype=np.object_,
        )
    )
    result = client.infer(DEFAULT_NAME, [infer_input])
    assert _labels(result) == ["Egyptian cat", "", "macaw"]
    errors = [e.decode() for e in result.as_numpy("errors")]
    assert errors[0] == errors[2] == ""
    assert errors[1].startswith("invalid_image: the file is not an image")
    assert not result.as_numpy("probabilities")[1].any()
    # None readable: the call fails, naming the first.
    only_bad = triton.InferInput("image", [1], "BYTES")
    only_bad.set_data_from_numpy(np.array([b"not an image"], dtype=np.object_))
    with pytest.raises(InferenceServerException, match=r"image\[0\]: the file is not an image"):
        client.infer(DEFAULT_NAME, [only_bad])


def test_bad_input_is_a_clear_error(client: triton.InferenceServerClient) -> None:
    wrong_type = triton.InferInput("image", [1, 2], "INT32")
    wrong_type.set_data_from_numpy(np.zeros((1, 2), np.int32))
    with pytest.raises(InferenceServerException, match="datatype must be BYTES"):
        client.infer(DEFAULT_NAME, [wrong_type])
    wrong_shape = triton.InferInput("input", [1, 100, 100, 3], "UINT8")
    wrong_shape.set_data_from_numpy(np.zeros((1, 100, 100, 3), np.uint8))
    with pytest.raises(InferenceServerException, match=r"shape \[n, 224, 224, 3\]"):
        client.infer(DEFAULT_NAME, [wrong_shape])


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        (b"not json", {}, "not JSON"),
        (b'{"inputs": 3}', {}, "'inputs' must be list"),
        (
            *_binary_request({"name": "image", "datatype": "BYTES", "shape": [2]}, b"abcd"),
            "an element says 1684234849 bytes but 0 are left",
        ),
        (
            b'{"inputs": [{"name": "input", "datatype": "UINT8", "shape": [1, 224, 224, 3],'
            b' "data": [1, 2]}]}',
            {},
            "has 150528 elements, data has 2",
        ),
        (b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}, "not within the body"),
        (b'{"inputs": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", {}, "nests too deep"),
    ],
    ids=["not json", "inputs not a list", "huge shape", "short data", "header length", "deep"],
)
def test_malformed_requests_get_json_errors(
    v2_server: Server, body: bytes, headers: dict[str, str], message: str
) -> None:
    response = requests.post(
        f"{v2_server.url}/v2/models/default/infer", data=body, headers=headers, timeout=30
    )
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert response.json()["code"] == "invalid_field"


def test_json_over_its_limit_is_refused_before_parsing(v2_server: Server) -> None:
    """Numbers in JSON cost Python objects many times their text: the limit is on the text."""
    body = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 224, 224, 3], "data": ['
    body += b"0.5," * (1 << 20) + b"0.5]}]}"
    response = requests.post(f"{v2_server.url}/v2/models/default/infer", data=body, timeout=30)
    assert response.status_code == 413, response.text
    assert "MAX_JSON_BYTES" in response.json()["error"]
    assert response.json()["code"] == "payload_too_large"


def test_a_tensor_of_more_images_than_a_call_takes_is_refused(v2_server: Server) -> None:
    tensor = {"name": "input", "datatype": "UINT8", "shape": [65, 224, 224, 3]}
    body, headers = _binary_request(tensor, bytes(65 * 224 * 224 * 3))
    response = requests.post(
        f"{v2_server.url}/v2/models/default/infer", data=body, headers=headers, timeout=60
    )
    assert response.status_code == 413, response.text
    assert response.json()["code"] == "too_many_images"
