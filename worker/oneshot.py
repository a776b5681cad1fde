"""One-shot mode: one frame on stdin, one JSON answer on stdout, exit code per protocol/errors."""

from __future__ import annotations

import sys
from typing import BinaryIO

from protocol import (
    ResourceExhausted,
    ServiceError,
    encode_description,
    encode_error,
    encode_probabilities,
)
from worker.execute import execute
from worker.framing import read_request
from worker.runtimes import RuntimeOptions


def answer(stdin: BinaryIO, options: RuntimeOptions) -> tuple[bytes, int]:
    """The answer bytes and the exit code for the frame on `stdin`."""
    try:
        request = read_request(stdin.read)
        assert request is not None
        rows, description = execute(request, options)
    except ServiceError as exc:
        return encode_error(exc), exc.exit_code
    except MemoryError:
        exc = ResourceExhausted("the worker ran out of its memory limit")
        return encode_error(exc), exc.exit_code
    result = rows[0] if len(rows) == 1 else rows
    if description is not None:
        return encode_description(description, result), 0
    return encode_probabilities(result), 0


def main(options: RuntimeOptions) -> int:
    data, code = answer(sys.stdin.buffer, options)
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return code
