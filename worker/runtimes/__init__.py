"""Model runtimes. Each is imported only when a model of its format arrives, so a worker that
serves TFLite never pays for importing TensorFlow."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from protocol import InputShapeMismatch, InvalidModel, Normalization
from protocol.formats import detect_format


class LoadedModel(Protocol):
    format: str
    input_name: str
    output_name: str
    input_size: tuple[int, int] | None  # height, width; None when the model takes any size
    input_dtype: str  # numpy name: "uint8", "float32", ...
    input_quantization: tuple[float, int] | None  # scale, zero point of a quantized input
    output_is_logits: bool | None  # known after the first classify()

    def classify(self, pixels: np.ndarray, normalization: Normalization) -> np.ndarray:
        """Probabilities, shape [n, classes], for uint8 RGB pixels of shape [n, h, w, 3]
        whose h and w already match `input_size` (see `check_input_size`)."""
        ...


def load_model(
    model: bytes,
    model_format: str | None,
    input_tensor: str | None,
    output_tensor: str | None,
    threads: int,
) -> LoadedModel:
    if not model:
        raise InvalidModel("the model is empty (0 bytes)")
    model_format = model_format or detect_format(model)
    if model_format == "tflite":
        from worker.runtimes.tflite import TfliteModel

        return TfliteModel(model, input_tensor, output_tensor, threads)
    if model_format == "savedmodel":
        from worker.runtimes.savedmodel import SavedModel

        return SavedModel(model, input_tensor, output_tensor, threads)
    from worker.runtimes.graphdef import GraphDefModel

    return GraphDefModel(model, input_tensor, output_tensor, threads)


def check_input_size(model: LoadedModel, height: int, width: int) -> None:
    if model.input_size is not None and (height, width) != model.input_size:
        expected_h, expected_w = model.input_size
        raise InputShapeMismatch(
            f"the model takes {expected_h}x{expected_w} images, got {height}x{width}"
        )
