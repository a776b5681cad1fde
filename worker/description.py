"""What a worker reports about a model it loaded: tensors, input size and type (and how the size
was found), the normalisation it applies by default, what its outputs are (probabilities,
logits or features), the tool that made it where its structure says so, and for a model it
converted (a Keras file) the converted model itself."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from protocol import InputShapeMismatch, ModelFailed, Normalization
from worker.inputs import effective_normalization
from worker.runtimes import LoadedModel

# Tried in this order for a graph that does not fix its input size: MobileNet V1/V2's sizes,
# then Inception's, then a few other classifiers'.
CANDIDATE_SIDES = (224, 192, 160, 128, 96, 299, 256, 331)
DEFAULT_SIDE = 224
# Teachable Machine's head layers, in its Keras, TensorFlow.js and TFLite exports alike.
TEACHABLE_MACHINE = re.compile(r"(^|/)dense_Dense\d+(/|$)")


def recognize_tool(model: LoadedModel) -> str | None:
    """The tool that made the model, where its structure says so (frontend/preprocessing.py
    prepares photos as that tool does): TensorFlow for Poets' `retrain.py` (its `final_result`
    output, its MobileNet V1 scopes), Teachable Machine (its `dense_Dense` head layers), or a
    quantized TFLite classifier, as Coral's are; None for any other."""
    output = model.output_name.split(":")[0]
    if output == "final_result" or (
        model.input_name.split(":")[0] == "input"
        and any(name.startswith("MobilenetV1/") for name in model.names)
    ):
        return "tf_poets"
    if any(TEACHABLE_MACHINE.search(name) for name in model.names):
        return "teachable_machine"
    if model.format == "tflite" and model.input_quantization is not None:
        return "coral"
    return None


def grey(size: tuple[int, int]) -> np.ndarray:
    """The probe image: one uniform grey image (128) of `size` (height, width)."""
    return np.full((1, *size, 3), 128, dtype=np.uint8)


def input_size(
    model: LoadedModel, requested: tuple[int, int] | None, normalization: Normalization
) -> tuple[tuple[int, int], str]:
    """The size to run the model at and where it comes from: `graph` (its input's shape),
    `given` (`requested`, for a graph that fixes none), `shapes` (the only size among those a
    classifier takes at which the graph runs: shapes fixed further down, such as a pooling
    window, decide it), `pooling` (several run, and at one of them the last pooling window
    covers the whole feature map under it: what the graph was built for) or `default` (several
    run; 224 px when it is one of them)."""
    if model.input_size is not None:
        if requested is not None and requested != model.input_size:
            height, width = model.input_size
            raise InputShapeMismatch(
                f"the model takes {height}x{width} images; input_size asked for "
                f"{requested[0]}x{requested[1]}"
            )
        return model.input_size, "graph"
    if requested is not None:
        return requested, "given"
    runs, first_error = [], None
    for side in CANDIDATE_SIDES:
        try:
            model.classify(grey((side, side)), normalization)
        except ModelFailed as exc:
            first_error = first_error or exc
            continue
        runs.append(side)
    if not runs:
        tried = ", ".join(str(side) for side in CANDIDATE_SIDES)
        raise ModelFailed(
            f"the graph does not fix its input size and runs at none of {tried} px; give "
            f"input_size. At {CANDIDATE_SIDES[0]} px: {first_error.message if first_error else ''}"
        )
    if len(runs) == 1:
        return (runs[0], runs[0]), "shapes"
    pooling = getattr(model, "pool_covering_side", None)
    covering = pooling(runs, normalization) if pooling else None
    if covering is not None:
        return (covering, covering), "pooling"
    side = DEFAULT_SIDE if DEFAULT_SIDE in runs else runs[0]
    return (side, side), "default"


def describe(
    model: LoadedModel,
    requested: Normalization,
    classes: int,
    size: tuple[int, int],
    size_source: str,
) -> dict[str, Any]:
    height, width = size
    description = {
        "format": model.format,
        "input": {
            "name": model.input_name,
            "height": height,
            "width": width,
            "size_source": size_source,
            "dtype": model.input_dtype,
            "quantization": list(model.input_quantization) if model.input_quantization else None,
            "batch": None if model.takes_batches else 1,
        },
        "output": {
            "name": model.output_name,
            "classes": classes,
            "softmax_applied": model.output_kind != "probabilities",
            "kind": model.output_kind,
        },
        "tool": recognize_tool(model),
        "normalization": effective_normalization(requested, np.dtype(model.input_dtype)).to_wire(),
    }
    converted = getattr(model, "converted", None)
    if converted is not None:  # bytes: only stream answers (msgpack) carry them
        description["converted_model"] = converted
        description["source_format"] = converted_from(model)
    return description


def converted_from(model: LoadedModel) -> str:
    return getattr(model, "source_format", model.format)
