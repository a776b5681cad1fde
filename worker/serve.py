"""Serve mode (`python -m worker --serve`): a long-lived worker reading a stream of frames on
stdin and writing one length-prefixed msgpack answer per frame on stdout, keeping loaded
models in an LRU cache. Model errors are answered and the worker goes on; a broken frame
leaves the stream out of step, so it is answered and the worker exits."""

from __future__ import annotations

import sys
from typing import BinaryIO

from protocol import FrameError, ResourceExhausted, ServiceError, encode_stream_answer
from worker.cache import ModelCache
from worker.execute import execute
from worker.framing import read_request
from worker.limits import Limits
from worker.runtimes import RuntimeOptions


def serve(
    stdin: BinaryIO,
    stdout: BinaryIO,
    options: RuntimeOptions,
    cache_bytes: int,
    limits: Limits | None = None,
) -> int:
    cache = ModelCache(cache_bytes)

    def send(answer: bytes) -> None:
        stdout.write(answer)
        stdout.flush()

    while True:
        try:
            request = read_request(stdin.read, allow_eof=True)
        except FrameError as exc:
            send(encode_stream_answer(error=exc))
            return exc.exit_code
        if request is None:
            return 0
        if limits is not None:
            limits.renew_cpu_budget()
        try:
            rows, description = execute(request, options, cache)
        except ServiceError as exc:
            send(encode_stream_answer(error=exc))
            continue
        except MemoryError:
            exc = ResourceExhausted("the worker ran out of its memory limit")
            send(encode_stream_answer(error=exc))
            return exc.exit_code
        send(encode_stream_answer(rows, description))


def main(options: RuntimeOptions, cache_mb: int, limits: Limits) -> int:
    return serve(sys.stdin.buffer, sys.stdout.buffer, options, cache_mb * 1024 * 1024, limits)
