"""One-shot mode: one frame on stdin, one JSON answer on stdout, exit code per protocol/errors.

The model runs in a child process with the worker's limits; this process, which holds the real
stdout and has no limits of its own, writes the answer the child sent over a pipe of its own.
So the file-size limit (0) does not stop the answer when stdout is a file (`> out.json`), a
model cannot write to stdout (the child's fd 1 is /dev/null), and a child that is killed or
crashes still gets a JSON error answer."""

from __future__ import annotations

import os
import sys
from typing import BinaryIO

from protocol import (
    ResourceExhausted,
    ServiceError,
    encode_description,
    encode_error,
    encode_probabilities,
    error_for_exit,
    read_request,
)
from worker.execute import execute
from worker.limits import Limits
from worker.runtimes import RuntimeOptions


def answer(stdin: BinaryIO, options: RuntimeOptions) -> tuple[bytes, int]:
    """The answer bytes and the exit code for the frame on `stdin`."""
    try:
        request = read_request(stdin.readinto)
        assert request is not None
        rows, description = execute(request, options)
    except ServiceError as exc:
        return encode_error(exc), exc.exit_code
    except MemoryError:
        exc = ResourceExhausted("the worker ran out of its memory limit")
        return encode_error(exc), exc.exit_code
    result = (rows[0] if len(rows) == 1 else rows).tolist()
    if description is not None:
        description.pop("converted_model", None)  # bytes: a JSON answer leaves them out
        return encode_description(description, result), 0
    return encode_probabilities(result), 0


def _run_child(answer_fd: int, options: RuntimeOptions, limits: Limits) -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    code = 1
    try:
        limits.apply()
        data, code = answer(sys.stdin.buffer, options)
        with os.fdopen(answer_fd, "wb") as channel:
            channel.write(data)
    finally:
        os._exit(code)


def main(options: RuntimeOptions, limits: Limits) -> int:
    sys.stdout.flush()
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_fd)
        _run_child(write_fd, options, limits)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as channel:
        data = channel.read()
    _, status = os.waitpid(child, 0)
    code = os.waitstatus_to_exitcode(status)
    if not data.strip():
        error = error_for_exit(code)
        data, code = encode_error(error), error.exit_code
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()
    return code
