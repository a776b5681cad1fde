"""Serve mode (`python -m worker --serve`): a long-lived worker reading a stream of frames on
stdin and writing one length-prefixed msgpack answer per frame, keeping loaded models in an LRU
cache. Model errors are answered and the worker goes on; a broken frame leaves the stream out of
step, so it is answered and the worker exits.

Answers go over a file descriptor of their own (`--answer-fd`, passed by the supervisor), never
over stdout: before any runtime loads a model, fds 1 and 2 both point at stderr, which the
supervisor reads into its log. Whatever a model prints cannot pass for an answer, and every
answer echoes its frame's request id."""

from __future__ import annotations

import os
import sys
from typing import BinaryIO

from protocol import FrameError, ResourceExhausted, ServiceError, encode_stream_answer, read_request
from worker.cache import ModelCache
from worker.execute import execute
from worker.limits import Limits
from worker.runtimes import RuntimeOptions, import_runtime

READY = b"R"  # on --ready-fd once started: its runtime imported, no model seen yet


def serve(
    stdin: BinaryIO,
    answers: BinaryIO,
    options: RuntimeOptions,
    cache_bytes: int,
    limits: Limits | None = None,
) -> int:
    cache = ModelCache(cache_bytes)

    def send(answer: bytes) -> None:
        answers.write(answer)
        answers.flush()

    while True:
        try:
            request = read_request(stdin.readinto, allow_eof=True)
        except FrameError as exc:
            send(encode_stream_answer(error=exc))
            return exc.exit_code
        if request is None:
            return 0
        request_id = request.header.request_id
        if limits is not None:
            limits.renew_cpu_budget()
        try:
            rows, description = execute(request, options, cache)
        except ServiceError as exc:
            send(encode_stream_answer(error=exc, request_id=request_id))
            continue
        except MemoryError:
            exc = ResourceExhausted("the worker ran out of its memory limit")
            send(encode_stream_answer(error=exc, request_id=request_id))
            return exc.exit_code
        send(encode_stream_answer(rows, description, request_id=request_id))


def answer_channel(answer_fd: int | None) -> BinaryIO:
    """The answers' own channel (stdout's old descriptor when none is given), with fds 1 and 2
    then both pointing at stderr."""
    channel = answer_fd if answer_fd is not None else os.dup(1)
    os.dup2(2, 1)
    return os.fdopen(channel, "wb")


def main(
    options: RuntimeOptions,
    cache_mb: int,
    limits: Limits,
    answer_fd: int | None,
    runtime: str | None = None,
    ready_fd: int | None = None,
) -> int:
    answers = answer_channel(answer_fd)
    if runtime is not None:  # after the answer channel: what the import prints goes to stderr
        import_runtime(runtime)
    if ready_fd is not None:  # the supervisor starts a frame's timeout from here
        os.write(ready_fd, READY)
        os.close(ready_fd)
    # Unbuffered: each read goes straight into the frame's buffers (protocol/frame.py).
    return serve(sys.stdin.buffer.raw, answers, options, cache_mb * 1024 * 1024, limits)
