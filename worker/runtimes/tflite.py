"""TFLite models through LiteRT (`ai-edge-litert`), the maintained successor of tf.lite."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from protocol import InvalidModel, ModelFailed, Normalization, TensorNotFound
from worker.inputs import to_input, to_probabilities

if TYPE_CHECKING:  # imported when a TFLite model arrives
    from ai_edge_litert.interpreter import Interpreter


def _pick(details: list[dict], wanted: str | None, role: str) -> dict:
    if wanted is None:
        if len(details) != 1:
            names = ", ".join(d["name"] for d in details)
            raise TensorNotFound(f"the model has {len(details)} {role}s ({names}); name one")
        return details[0]
    for d in details:
        if d["name"] == wanted:
            return d
    names = ", ".join(d["name"] for d in details)
    raise TensorNotFound(f"no {role} tensor named {wanted!r}; the model has: {names}")


def _interpreter(model: bytes, threads: int) -> Interpreter:
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=model, num_threads=threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise InvalidModel(f"not a loadable TFLite model: {exc}") from None
    return interpreter


class TfliteModel:
    format = "tflite"
    takes_batches = False  # its tensors are allocated for one image; several run one by one

    def __init__(
        self,
        model: bytes,
        input_tensor: str | None,
        output_tensor: str | None,
        threads: int,
        solo_threads: int = 1,
    ) -> None:
        """`solo_threads`: more threads than `threads` give the model a second interpreter,
        which runs the frames sent as solo (the other cores idle). A LiteRT interpreter's
        threads are fixed when it is made."""
        self._interpreter = _interpreter(model, threads)
        self._solo = _interpreter(model, solo_threads) if solo_threads > threads else None
        self._input = _pick(self._interpreter.get_input_details(), input_tensor, "input")
        self._output = _pick(self._interpreter.get_output_details(), output_tensor, "output")
        shape = self._input["shape"]
        if len(shape) != 4 or shape[3] != 3:
            raise InvalidModel(
                f"input {self._input['name']!r} has shape {[int(d) for d in shape]}, not [n,h,w,3]"
            )
        self.input_name = self._input["name"]
        self.output_name = self._output["name"]
        self.names = tuple(d["name"] for d in self._interpreter.get_tensor_details())
        self.input_size = (int(shape[1]), int(shape[2]))
        self.input_dtype = np.dtype(self._input["dtype"]).name
        scale, zero_point = self._input["quantization"]
        self.input_quantization = (float(scale), int(zero_point)) if scale else None
        self.output_kind: str | None = None

    def classify(
        self, pixels: np.ndarray, normalization: Normalization, solo: bool = False
    ) -> np.ndarray:
        batch = to_input(
            pixels, normalization, self._input["dtype"], tuple(self._input["quantization"])
        )
        interpreter = self._solo if solo and self._solo is not None else self._interpreter
        rows = []
        try:
            for image in batch:  # the interpreter's input is allocated for batch 1
                interpreter.set_tensor(self._input["index"], image[np.newaxis])
                interpreter.invoke()
                rows.append(interpreter.get_tensor(self._output["index"]).copy())
        except (ValueError, RuntimeError) as exc:
            raise ModelFailed(f"the TFLite model failed to run: {exc}") from None
        probabilities, self.output_kind = to_probabilities(
            np.concatenate(rows), len(batch), tuple(self._output["quantization"])
        )
        return probabilities
