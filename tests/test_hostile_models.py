"""Hostile uploads, round three: the models of the report that TensorFlow would run, refused by
the worker's checks before anything of them loads. A Keras file whose configuration is in the
old list form hid a Lambda from the layer check; a SavedModel node named as the saver's restore
op hid the serving function's ReadFile and PrintV2 from the allowlist; a SavedModel that writes
a variable on every call handed the previous caller's thumbnail to the next. The layer walk
and the HDF5 checks are also run here on their own (no TensorFlow needed)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from helpers import IMAGES
from helpers import MALICIOUS_SECRET as SECRET

from protocol import OpNotAllowed
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
