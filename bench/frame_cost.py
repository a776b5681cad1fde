"""The frame path's own cost: CPU per frame of a warm worker (inside the sandbox) and of the
supervisor side that sends it, against the raw model's CPU per image in a plain loop. The
difference is what framing, pipes and answers cost around `invoke`.

With `--tiny`, the worker runs a model that only averages the image (one AVERAGE_POOL_2D over
224x224 uint8 pixels, 3 outputs): `invoke` then costs next to nothing and what is measured is the
frame path itself, with far less noise than a difference of two 7 ms figures.

    .venv/bin/python -m bench.frame_cost [--frames 2000] [--no-sandbox] [--tiny]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import tempfile
import time
from pathlib import Path

from bench.raw import raw_throughput
from bench.setup import DEFAULT_MODEL, make_images
from frontend.images import prepare_image
from protocol import Request, RequestHeader
from supervisor.config import launch_settings
from supervisor.launcher import WarmWorker
from supervisor.settings import WorkerSettings, from_environment


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--no-sandbox", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a model that costs next to nothing")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        image = make_images(Path(tmp))["224px"]
        pixels = prepare_image(image.read_bytes(), (224, 224))
    model = tiny_model() if args.tiny else DEFAULT_MODEL.read_bytes()
    config = {"worker_sandbox": "none" if args.no_sandbox else "bwrap"}
    settings = launch_settings(from_environment(WorkerSettings, {}, **config))
    worker = WarmWorker(settings, 1024)
    try:
        full = Request(RequestHeader(224, 224, len(model)), model, pixels.tobytes())
        worker.exchange(full, 60)
        import hashlib

        sha256 = hashlib.sha256(model).hexdigest()
        by_reference = Request(
            RequestHeader(224, 224, 0, model_sha256=sha256), b"", pixels.tobytes()
        )
        for _ in range(50):
            worker.exchange(by_reference, 60)
        process = worker.process.pid
        children = [process, *_descendants(process)]
        before = sum(_cpu_seconds(pid) for pid in children)
        start_cpu, start = time.process_time(), time.perf_counter()
        for _ in range(args.frames):
            worker.exchange(by_reference, 60)
        wall = time.perf_counter() - start
        sender_ms = (time.process_time() - start_cpu) / args.frames * 1000
        worker_ms = (sum(_cpu_seconds(pid) for pid in children) - before) / args.frames * 1000
    finally:
        worker.stop()
    with tempfile.NamedTemporaryFile(suffix=".tflite") as file:
        file.write(model)
        file.flush()
        raw = raw_throughput(Path(file.name), pixels, 1, 5)
    print(
        json.dumps(
            {
                "frames": args.frames,
                "sandbox": not args.no_sandbox,
                "raw_ms_per_image": round(raw["p50_ms"], 3),
                "worker_cpu_ms_per_frame": round(worker_ms, 3),
                "sender_cpu_ms_per_frame": round(sender_ms, 3),
                "wall_ms_per_frame": round(wall / args.frames * 1000, 3),
            }
        )
    )


def tiny_model() -> bytes:
    """uint8 [1, 224, 224, 3] → AVERAGE_POOL_2D → RESHAPE → uint8 [1, 3], quantized alike."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    def quantized(name: bytes, shape: list[int], buffer: int = 0) -> object:
        tensor = schema.TensorT()
        tensor.name, tensor.shape, tensor.type, tensor.buffer = (
            name,
            shape,
            schema.TensorType.UINT8,
            buffer,
        )
        tensor.quantization = schema.QuantizationParametersT()
        tensor.quantization.scale, tensor.quantization.zeroPoint = [1 / 256], [0]
        return tensor

    shape = schema.TensorT()
    shape.name, shape.shape, shape.type, shape.buffer = b"shape", [2], schema.TensorType.INT32, 1
    tensors = [
        quantized(b"input", [1, 224, 224, 3]),
        quantized(b"pooled", [1, 1, 1, 3]),
        shape,
        quantized(b"output", [1, 3]),
    ]
    codes = []
    for builtin in (schema.BuiltinOperator.AVERAGE_POOL_2D, schema.BuiltinOperator.RESHAPE):
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = builtin
        codes.append(code)
    pool = schema.OperatorT()
    pool.opcodeIndex, pool.inputs, pool.outputs = 0, [0], [1]
    pool.builtinOptionsType = schema.BuiltinOptions.Pool2DOptions
    pool.builtinOptions = schema.Pool2DOptionsT()
    pool.builtinOptions.filterHeight = pool.builtinOptions.filterWidth = 224
    pool.builtinOptions.strideH = pool.builtinOptions.strideW = 1
    pool.builtinOptions.padding = schema.Padding.VALID
    reshape = schema.OperatorT()
    reshape.opcodeIndex, reshape.inputs, reshape.outputs = 1, [1, 2], [3]
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs = tensors, [0], [3]
    subgraph.operators = [pool, reshape]
    model = schema.ModelT()
    model.version, model.operatorCodes, model.subgraphs = 3, codes, [subgraph]
    empty, shape_data = schema.BufferT(), schema.BufferT()
    shape_data.data = list(struct.pack("<2i", 1, 3))
    model.buffers = [empty, shape_data]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _descendants(pid: int) -> list[int]:
    from tools.server import process_tree

    return [p for p in process_tree(pid) if p != pid]


if __name__ == "__main__":
    main()
