"""Shared frames: single-image requests for one model that wait for a worker go to it together,
as one frame of several images, and each caller gets its own row back.

A model's frames run at most as many at once as its lane has workers (its `places`, from the
pool). A request that finds a place free sends its frame at once, alone: sharing adds no wait to
a request on an idle service. Requests that arrive while every place is taken wait in arrival
order; when a place frees, the oldest of them go in one frame, as many as a fair share: the
waiting requests divided among all the places (rounded up), at most the frame's limit. Two
requests waiting for two busy workers thus still go one to each as they free, where one frame of
two would leave the other worker idle; twelve go six to the first. One frame then carries what
would have been several: one write, one wake-up of the worker, one answer, instead of one each,
whatever the model (a worker runs the images of a model with a fixed batch one by one, in one
go).

Which requests share:
- **the default model's** (the trusted lane), up to DEFAULT_MODEL_BATCH_SIZE images a frame:
  its cost per image is known, and its lane's timeout allows many;
- **dynamic batching**, for uploaded models that take any batch size (one run classifies the
  whole batch), up to BATCH_MAX_SIZE, off by default; a frame that goes with room to spare
  waits up to BATCH_WAIT_MS for more requests to join it, even when a worker is free;
- everything else passes straight through: other uploads (a frame's images all count against the
  upload lane's timeout), calls of several images, and describe frames.

Waiting requests are bounded as the pool bounds its own: past the lane's queue limit, or its
timeout, Overloaded (HTTP 503 with Retry-After)."""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from protocol import Overloaded, Request, RequestHeader, ServiceError
from protocol.header import MAX_PIXEL_BYTES
from supervisor.lanes import LaneLimits
from supervisor.metrics import BATCH_SIZE
from supervisor.transport import Answer, Transport


class Lanes(Transport, Protocol):
    """The pool, as the Batcher sees it (supervisor/pool.py)."""

    def lane(self, sha256: str) -> LaneLimits: ...


def _batch_key(header: RequestHeader) -> tuple:
    """Requests that one frame can carry together: same model, tensors, size and normalisation."""
    return (
        header.model_sha256,
        header.input_tensor,
        header.output_tensor,
        header.height,
        header.width,
        header.normalization,
    )


@dataclass
class _Call:
    request: Request
    ready: threading.Event = field(default_factory=threading.Event)  # to send, or answered
    frame: list[_Call] | None = None  # on the call that sends: the calls its frame carries
    rows: np.ndarray | None = None
    error: ServiceError | None = None


@dataclass
class _Model:
    """One key's frames: how many run, and the calls waiting, oldest first."""

    limit: int  # images a frame carries at most
    wait: float  # seconds a frame with room to spare waits for more (dynamic batching)
    lane: LaneLimits
    arrived: threading.Condition
    running: int = 0
    waiting: deque[_Call] = field(default_factory=deque)


class Batcher:
    def __init__(
        self,
        transport: Lanes,
        max_size: int,
        wait_seconds: float,
        default_model_max_size: int = 1,
    ) -> None:
        self._transport = transport
        self.max_size = max_size
        self.wait_seconds = wait_seconds
        self.default_model_max_size = default_model_max_size
        self._lock = threading.Lock()
        self._models: dict[tuple, _Model] = {}
        self.sandboxed = transport.sandboxed

    def _policy(
        self, header: RequestHeader, batchable: bool
    ) -> tuple[int, float, LaneLimits | None]:
        """The most images a frame of this request may carry, how long a frame with room to
        spare waits for more, and what the model's lane allows."""
        if header.image_count != 1 or header.describe or not header.model_sha256:
            return 1, 0.0, None
        lane = self._transport.lane(header.model_sha256)
        if lane.default:
            return self.default_model_max_size, 0.0, lane
        return (self.max_size, self.wait_seconds, lane) if batchable else (1, 0.0, lane)

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        """`batchable`: the model takes any batch size (dynamic batching applies)."""
        limit, wait, lane = self._policy(request.header, batchable)
        limit = min(limit, MAX_PIXEL_BYTES // max(1, len(request.pixels)))  # a frame's pixels
        if limit <= 1 or lane is None:
            return self._transport.exchange(request)
        key, call = _batch_key(request.header), _Call(request)
        with self._lock:
            model = self._models.get(key)
            if model is None:
                arrived = threading.Condition(self._lock)
                model = self._models[key] = _Model(limit, wait, lane, arrived)
            if len(model.waiting) >= lane.queue_limit:
                raise Overloaded(f"{len(model.waiting)} requests are already waiting for a worker")
            model.waiting.append(call)
            model.arrived.notify()
            self._dispatch(model)
        if not call.ready.wait(lane.timeout):
            with self._lock:
                if call in model.waiting:  # no place came free for it
                    model.waiting.remove(call)
                    self._forget_if_idle(key, model)
                    raise Overloaded(f"no worker was free within {lane.timeout:g} s")
            call.ready.wait()  # it is in a frame: the pool bounds the frame's time
        if call.frame is not None:
            self._send(key, model, call.frame)
        if call.error is not None:
            raise copy.copy(call.error)  # one instance per caller: tracebacks are per thread
        return call.rows, None  # float32 [1, classes], as unbatched

    def _dispatch(self, model: _Model) -> None:
        """While a place is free, the oldest waiting calls, a fair share of them, go as one
        frame, sent by the first of them (the lock held)."""
        while model.running < model.lane.places and model.waiting:
            share = -(-len(model.waiting) // model.lane.places)
            frame = [model.waiting.popleft() for _ in range(min(model.limit, share))]
            model.running += 1
            frame[0].frame = frame
            frame[0].ready.set()

    def _forget_if_idle(self, key: tuple, model: _Model) -> None:
        if model.running == 0 and not model.waiting and self._models.get(key) is model:
            del self._models[key]

    def _gather(self, model: _Model, frame: list[_Call]) -> None:
        """Dynamic batching: a frame with room to spare takes the calls that arrive within the
        wait (the lock held)."""
        deadline = time.monotonic() + model.wait
        while len(frame) < model.limit:
            while model.waiting and len(frame) < model.limit:
                frame.append(model.waiting.popleft())
            remaining = deadline - time.monotonic()
            if len(frame) >= model.limit or remaining <= 0:
                return
            model.arrived.wait(remaining)

    def _send(self, key: tuple, model: _Model, frame: list[_Call]) -> None:
        try:
            if model.wait > 0 and len(frame) < model.limit:
                with self._lock:
                    self._gather(model, frame)
            self._exchange(frame)
        finally:
            with self._lock:
                model.running -= 1
                self._dispatch(model)
                self._forget_if_idle(key, model)

    def _exchange(self, frame: list[_Call]) -> None:
        """One frame for the calls, each given its row or the frame's error."""
        first, count = frame[0].request, len(frame)
        if count > 1:
            header = dataclasses.replace(first.header, image_count=count)
            first = Request(header, first.model, b"".join(call.request.pixels for call in frame))
        BATCH_SIZE.observe(count)
        try:
            rows, _ = self._transport.exchange(first)
            for position, call in enumerate(frame):
                call.rows = rows[position : position + 1]
        except ServiceError as exc:
            for call in frame:
                call.error = exc
        except BaseException as exc:
            for call in frame:
                call.error = ServiceError(f"the batch failed: {exc}")
            raise
        finally:
            for call in frame[1:]:
                call.ready.set()

    def trust(self, sha256: str) -> None:
        self._transport.trust(sha256)

    def preload(self, request: Request) -> None:
        self._transport.preload(request)

    def close(self) -> None:
        self._transport.close()
