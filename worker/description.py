"""What a worker reports about a model it loaded: tensors, input size and type, the
normalisation it applies by default and whether the outputs needed softmax."""

from __future__ import annotations

from typing import Any

import numpy as np

from protocol import Normalization
from worker.inputs import effective_normalization
from worker.runtimes import LoadedModel

PROBE_SIZE = (224, 224)  # for graphs whose input size is not fixed


def describe(model: LoadedModel, requested: Normalization, classes: int) -> dict[str, Any]:
    height, width = model.input_size or (None, None)
    return {
        "format": model.format,
        "input": {
            "name": model.input_name,
            "height": height,
            "width": width,
            "dtype": model.input_dtype,
            "quantization": list(model.input_quantization) if model.input_quantization else None,
            "batch": None if model.takes_batches else 1,
        },
        "output": {
            "name": model.output_name,
            "classes": classes,
            "softmax_applied": bool(model.output_is_logits),
        },
        "normalization": effective_normalization(requested, np.dtype(model.input_dtype)).to_wire(),
    }
