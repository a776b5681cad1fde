"""Model runtimes. Each is imported only when a model of its format arrives, so a worker that
serves TFLite never pays for importing TensorFlow."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from protocol import InputShapeMismatch, InvalidModel, Normalization
from protocol.formats import RUNTIMES, detect_format
from worker.allowlist import check_tflite
from worker.cost import check_tflite_cost
from worker.extent import check_tflite_extent


class LoadedModel(Protocol):
    format: str
    input_name: str
    output_name: str
    input_size: tuple[int, int] | None  # height, width; None when the model takes any size
    takes_batches: bool  # one run classifies many images (an unknown batch dimension)
    input_dtype: str  # numpy name: "uint8", "float32", ...
    input_quantization: tuple[float, int] | None  # scale, zero point of a quantized input
    output_kind: str | None  # probabilities, logits or features (worker/inputs.py), once run
    names: tuple[str, ...]  # its nodes' or tensors' names, where a tool leaves its marks

    def classify(
        self, pixels: np.ndarray, normalization: Normalization, solo: bool = False
    ) -> np.ndarray:
        """Probabilities, shape [n, classes], for uint8 RGB pixels of shape [n, h, w, 3]
        whose h and w already match `input_size` (see `check_input_size`). `solo`: the
        other cores are idle, so a runtime that can may use its solo threads."""
        ...


@dataclass(frozen=True)
class RuntimeOptions:
    threads: int = 1  # inference threads
    solo_threads: int = 1  # a solo frame's (TFLite): the cores idle when nothing else runs
    # Refuse operations outside worker/allowlist.py before anything runs (trusted models only
    # may go without). The static cost check (worker/cost.py) applies to every model.
    check_ops: bool = True


__all__ = ["RUNTIMES", "LoadedModel", "RuntimeOptions", "import_runtime", "load_model"]


def import_runtime(runtime: str) -> None:
    """Import a runtime ahead of any model (protocol.formats.RUNTIMES): LiteRT with the
    flatbuffer schema its checks read, or TensorFlow."""
    if runtime == "tflite":
        import ai_edge_litert.interpreter
        import ai_edge_litert.schema_py_generated  # noqa: F401
    elif runtime == "tensorflow":
        import tensorflow  # noqa: F401
    else:
        raise ValueError(f"no runtime {runtime!r}; one of {RUNTIMES}")


def load_model(
    model: bytes,
    model_format: str | None,
    input_tensor: str | None,
    output_tensor: str | None,
    options: RuntimeOptions,
) -> LoadedModel:
    if not model:
        raise InvalidModel("the model is empty (0 bytes)")
    model_format = model_format or detect_format(model)
    threads, check_ops = options.threads, options.check_ops
    if model_format == "tflite":
        from worker.runtimes.tflite import TfliteModel

        check_tflite_extent(model)
        if check_ops:
            check_tflite(model)
        check_tflite_cost(model)
        return TfliteModel(model, input_tensor, output_tensor, threads, options.solo_threads)
    if model_format == "keras":
        from worker.runtimes.keras import load_keras

        return load_keras(model, input_tensor, output_tensor, threads, check_ops)
    if model_format == "savedmodel":
        from worker.runtimes.savedmodel import load_saved_model

        return load_saved_model(model, input_tensor, output_tensor, threads, check_ops)
    from worker.runtimes.graphdef import GraphDefModel

    return GraphDefModel(model, input_tensor, output_tensor, threads, check_ops)


def check_input_size(model: LoadedModel, height: int, width: int) -> None:
    if model.input_size is not None and (height, width) != model.input_size:
        expected_h, expected_w = model.input_size
        raise InputShapeMismatch(
            f"the model takes {expected_h}x{expected_w} images, got {height}x{width}"
        )
