"""One-shot mode: one frame on stdin, one JSON answer on stdout, exit code per protocol/errors."""

from __future__ import annotations

import sys
from typing import BinaryIO

import numpy as np

from protocol import (
    Request,
    ResourceExhausted,
    ServiceError,
    encode_description,
    encode_error,
    encode_probabilities,
)
from worker.description import PROBE_SIZE, describe
from worker.framing import read_request
from worker.runtimes import check_input_size, load_model


def run(request: Request, threads: int) -> bytes:
    """The success answer for `request`; raises ServiceError for every failure."""
    header = request.header
    model = load_model(
        request.model, header.model_format, header.input_tensor, header.output_tensor, threads
    )
    if header.image_count == 0:  # a describe request: probe with uniform grey at the model's size
        height, width = model.input_size or PROBE_SIZE
        pixels = np.full((1, height, width, 3), 128, dtype=np.uint8)
    else:
        check_input_size(model, header.height, header.width)
        pixels = np.frombuffer(request.pixels, dtype=np.uint8).reshape(
            header.image_count, header.height, header.width, header.channels
        )
    probabilities = model.classify(pixels, header.normalization)
    rows = probabilities.tolist()
    result = rows[0] if len(rows) == 1 else rows
    if header.describe:
        return encode_description(describe(model, header.normalization, len(rows[0])), result)
    return encode_probabilities(result)


def answer(stdin: BinaryIO, threads: int) -> tuple[bytes, int]:
    """The answer bytes and the exit code for the frame on `stdin`."""
    try:
        return run(read_request(stdin.read), threads), 0
    except ServiceError as exc:
        return encode_error(exc), exc.exit_code
    except MemoryError:
        exc = ResourceExhausted("the worker ran out of its memory limit")
        return encode_error(exc), exc.exit_code


def main(threads: int) -> int:
    data, code = answer(sys.stdin.buffer, threads)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return code
