"""One-shot mode: one frame on stdin, one JSON answer on stdout, exit code per protocol/errors."""

from __future__ import annotations

import sys
from typing import BinaryIO

import numpy as np

from protocol import (
    Request,
    ResourceExhausted,
    ServiceError,
    encode_error,
    encode_probabilities,
)
from worker.framing import read_request
from worker.runtimes import check_input_size, load_model


def classify(request: Request, threads: int) -> np.ndarray:
    header = request.header
    model = load_model(
        request.model, header.model_format, header.input_tensor, header.output_tensor, threads
    )
    check_input_size(model, header.height, header.width)
    pixels = np.frombuffer(request.pixels, dtype=np.uint8).reshape(
        header.image_count, header.height, header.width, header.channels
    )
    return model.classify(pixels, header.normalization)


def answer(stdin: BinaryIO, threads: int) -> tuple[bytes, int]:
    """The answer bytes and the exit code for the frame on `stdin`."""
    try:
        probabilities = classify(read_request(stdin.read), threads)
    except ServiceError as exc:
        return encode_error(exc), exc.exit_code
    except MemoryError:
        exc = ResourceExhausted("the worker ran out of its memory limit")
        return encode_error(exc), exc.exit_code
    rows = probabilities.tolist()
    return encode_probabilities(rows[0] if len(rows) == 1 else rows), 0


def main(threads: int) -> int:
    data, code = answer(sys.stdin.buffer, threads)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return code
