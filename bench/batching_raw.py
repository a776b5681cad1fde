"""Whether batching inside the model pays for the default TFLite model on this CPU: the model
made batchable (its one fixed Reshape, `[1, 1001]`, set to `[-1, 1001]` with TensorFlow's
`flatbuffer_utils`), run by LiteRT on one thread at batch 1, 4 and 8, rounds interleaved so that
a noisy neighbour weighs on every size alike. Reports ms per image for each size, and checks
that batch 1 of the batchable model answers exactly as the official one.

    .venv/bin/python -m bench.batching_raw [--rounds 5] [--seconds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from bench.setup import DEFAULT_MODEL

BATCH_SIZES = (1, 4, 8)
RESHAPE = 22  # tflite BuiltinOperator


def batchable_copy(model: Path, out: Path) -> Path:
    """The model with its fixed batch dimension opened: the input's shape signature and the
    Reshape's constant shape get -1 as their first dimension."""
    from tensorflow.lite.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model(str(model))
    graph = flat.subgraphs[0]
    first = graph.tensors[graph.inputs[0]]
    first.shapeSignature = np.array([-1, *first.shape[1:]], dtype=np.int32)
    for op in graph.operators:
        if flat.operatorCodes[op.opcodeIndex].builtinCode != RESHAPE:
            continue
        target = flat.buffers[graph.tensors[op.inputs[1]].buffer]
        shape = np.frombuffer(bytes(target.data), dtype=np.int32).copy()
        shape[0] = -1
        target.data = np.frombuffer(shape.tobytes(), dtype=np.uint8)
    flatbuffer_utils.write_model(flat, str(out))
    return out


def _interpreter(model: Path, batch: int):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(model), num_threads=1)
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, [batch, 224, 224, 3])
    interpreter.allocate_tensors()
    return interpreter, index


def _ms_per_image(interpreter, index: int, images: np.ndarray, seconds: float) -> float:
    runs, end = [], time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        interpreter.set_tensor(index, images)
        interpreter.invoke()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs) * 1000 / len(images)


def measure_batching_raw(folder: Path, rounds: int = 5, seconds: float = 2.0) -> dict:
    batchable = batchable_copy(DEFAULT_MODEL, folder / "batchable.tflite")
    pixels = np.random.default_rng(0).integers(0, 256, (8, 224, 224, 3), dtype=np.uint8)
    official, index = _interpreter(DEFAULT_MODEL, 1)
    single, single_index = _interpreter(batchable, 1)
    outputs = []
    for interpreter, at in ((official, index), (single, single_index)):
        interpreter.set_tensor(at, pixels[:1])
        interpreter.invoke()
        outputs.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).copy())
    runners = {batch: _interpreter(batchable, batch) for batch in BATCH_SIZES}
    times: dict[int, list[float]] = {batch: [] for batch in BATCH_SIZES}
    for _ in range(rounds):
        for batch, (interpreter, at) in runners.items():
            times[batch].append(_ms_per_image(interpreter, at, pixels[:batch], seconds))
    return {
        "batch1_identical": bool(np.array_equal(outputs[0], outputs[1])),
        "ms_per_image": {str(b): round(statistics.median(t), 3) for b, t in times.items()},
        "rounds": rounds,
    }


def print_batching_raw(result: dict) -> None:
    sizes = ", ".join(f"batch {b}: {ms:.2f} ms" for b, ms in result["ms_per_image"].items())
    print(
        f"default model made batchable, one thread, ms per image ({sizes}); batch 1 answers "
        f"{'exactly as' if result['batch1_identical'] else 'NOT as'} the official model"
    )


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = measure_batching_raw(Path(tmp), args.rounds, args.seconds)
    print(json.dumps(result))
    print_batching_raw(result)


if __name__ == "__main__":
    main()
