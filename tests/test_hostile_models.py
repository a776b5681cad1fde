"""Hostile uploads, round three: the models of the report that TensorFlow would run, refused by
the worker's checks before anything of them loads. A Keras file whose configuration is in the
old list form hid a Lambda from the layer check; a SavedModel node named as the saver's restore
op hid the serving function's ReadFile and PrintV2 from the allowlist; a SavedModel that writes
a variable on every call handed the previous caller's thumbnail to the next; a TFLite model
padded with bytes it never reads was stored as a model. The layer walk, the HDF5 checks and the
TFLite extent are also run here on their own (no TensorFlow needed)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from helpers import BIRD_MODEL, DEFAULT_MODEL, IMAGES
from helpers import MALICIOUS_SECRET as SECRET

from protocol import InvalidModel, OpNotAllowed
from worker.extent import check_tflite_extent, flatbuffer_end
from worker.runtimes.keras import _configuration, check_layers

LABELS = b"a\nb\nc\nd\n"
CAT = (IMAGES / "cat.jpg").read_bytes()
KNOWN = SimpleNamespace(Dense=object, InputLayer=object, Flatten=object, Bidirectional=object,
                        LSTM=object, TimeDistributed=object)  # fmt: skip
LAMBDA = {
    "class_name": "Lambda",
    "config": {"name": "evil", "function": ["4wEAAAAAAAA=", None, None], "function_type": "lambda"},
}
DENSE = {"class_name": "Dense", "config": {"name": "dense", "units": 4}}


def _h5(config: dict, external: Path | None = None) -> bytes:
    """An .h5 model file of this configuration (and a weight kept in `external`, if given)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as file:
        file.attrs["model_config"] = json.dumps(config)
        file.attrs["keras_version"] = "2.0.8"
        weights = file.create_group("model_weights")
        if external is not None:
            external.write_bytes(np.ones(4, np.float32).tobytes())
            weights.create_dataset("bias", (4,), np.float32, external=[(str(external), 0, 16)])
    return buffer.getvalue()


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "Sequential", "config": [LAMBDA, DENSE]},  # Keras 2.0's list form
        {"class_name": "Sequential", "config": {"name": "s", "layers": [DENSE, LAMBDA]}},
        {  # a wrapper's other layer
            "class_name": "Sequential",
            "config": {
                "layers": [
                    {
                        "class_name": "Bidirectional",
                        "config": {"layer": DENSE, "backward_layer": LAMBDA},
                    }
                ]
            },
        },
        {
            "class_name": "Sequential",
            "config": {"layers": [{**DENSE, "kernel_initializer": LAMBDA}]},
        },
    ],
    ids=["list form", "layers", "backward layer", "anywhere"],
)
def test_a_lambda_is_refused_wherever_it_sits(config: dict) -> None:
    with pytest.raises(OpNotAllowed, match="Lambda"):
        check_layers(config, KNOWN)


@pytest.mark.parametrize(
    "config",
    [
        {"class_name": "Sequential", "config": {"name": "s", "layers": "not a list"}},
        {"class_name": "Functional", "config": None},
        {"class_name": "Sequential", "config": [DENSE, "a string where a layer goes"]},
    ],
)
def test_a_configuration_the_walk_cannot_read_is_refused(config: dict) -> None:
    with pytest.raises(OpNotAllowed, match="cannot check layer by layer"):
        check_layers(config, KNOWN)


def test_plain_layers_pass() -> None:
    check_layers({"class_name": "Sequential", "config": [DENSE]}, KNOWN)
    check_layers({"class_name": "Sequential", "config": {"layers": [DENSE, DENSE]}}, KNOWN)


def test_an_hdf5_dataset_kept_in_another_file_is_refused(tmp_path: Path) -> None:
    """h5py would read the other file while the weights load (inside the sandbox, but still)."""
    blob = _h5({"class_name": "Sequential", "config": [DENSE]}, external=tmp_path / "bias.bin")
    with pytest.raises(OpNotAllowed, match="keep their data in other files"):
        _configuration(blob)
    assert _configuration(_h5({"class_name": "Sequential", "config": [DENSE]}))


@pytest.mark.parametrize(
    "name, says",
    [
        ("saver_def_bypass.zip", "ReadFile"),
        ("stateful_savedmodel.zip", "writes variables"),
        ("list_form_lambda.h5", "Lambda 'evil' run Python code"),
    ],
)
def test_the_reports_models_are_refused_over_http(
    corpus: Path, base_url: str, register, tmp_path: Path, name: str, says: str
) -> None:
    model = corpus / "models" / name
    if not model.exists():  # the Keras one is made here: h5py needs no TensorFlow
        model = tmp_path / name
        model.write_bytes(_h5({"class_name": "Sequential", "config": [LAMBDA, DENSE]}))
    answer = register(base_url, model, LABELS)
    assert answer.status_code == 422, answer.text
    error = answer.json()["error"]
    assert error["code"] == "model_op_not_allowed"
    assert says in error["message"]
    assert SECRET not in answer.text


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def test_a_tflite_models_extent_is_what_it_references() -> None:
    """The official models end in the zip of their labels that TFLite metadata appends: the
    walk finds the flatbuffer's end exactly where that zip starts. Padding past it, or a zip
    of more than labels, is refused."""
    for path in (DEFAULT_MODEL, BIRD_MODEL):
        model = path.read_bytes()
        end = flatbuffer_end(model)
        assert model[end : end + 4] == b"PK\x03\x04"  # the associated files' zip
        check_tflite_extent(model)
    model = DEFAULT_MODEL.read_bytes()
    flatbuffer = model[: flatbuffer_end(model)]
    check_tflite_extent(flatbuffer)
    check_tflite_extent(flatbuffer + _zip({"labels.txt": b"a\nb\n"}))
    for padded in (
        model + bytes(1 << 20),
        flatbuffer + bytes(1 << 20),
        flatbuffer + _zip({"labels.txt": bytes(8 << 20)}),
    ):
        with pytest.raises(InvalidModel, match="follow the end of the TFLite model"):
            check_tflite_extent(padded)


def test_a_padded_tflite_model_is_refused_over_http(base_url: str, register, tmp_path) -> None:
    padded = tmp_path / "padded.tflite"
    padded.write_bytes(DEFAULT_MODEL.read_bytes() + bytes(5 << 20))
    answer = register(base_url, padded, LABELS)  # refused before its labels are looked at
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "model_invalid"
    assert "follow the end of the TFLite model" in answer.json()["error"]["message"]
