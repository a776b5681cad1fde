"""Shared frames: single-image requests for one model that wait for a worker go to it together,
as one frame of several images, and each caller gets its own row back.

A model's frames run at most as many at once as its lane has workers (the pool's
`frames_at_once`). A request that finds a place sends its frame at once, alone: sharing adds no
wait to a request on an idle service. Requests that arrive while the model's frames fill every
place join the oldest unsent batch of theirs, and it goes, in arrival order, as soon as a frame
of that model ends. One frame then carries what would have been several: one write, one wake-up
of the worker, one answer, instead of one each, whatever the model (a worker runs the images of
a model with a fixed batch one by one, in one go).

Which requests share:
- **the default model's** (the trusted lane), up to DEFAULT_MODEL_BATCH_SIZE images a frame:
  its cost per image is known, and its lane's timeout allows many;
- **dynamic batching**, for uploaded models that take any batch size (one run classifies the
  whole batch), up to BATCH_MAX_SIZE, off by default; the first request of a batch also waits
  up to BATCH_WAIT_MS for others to join, even when a worker is free;
- everything else passes straight through: other uploads (a frame's images all count against the
  upload lane's timeout), calls of several images, and describe frames."""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

from protocol import Overloaded, Request, RequestHeader, ServiceError
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
class _Batch:
    limit: int
    requests: list[Request] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    rows: list[list[float]] = field(default_factory=list)
    error: ServiceError | None = None


@dataclass
class _Model:
    """One key's frames: those running, and the batches waiting to go, oldest first."""

    changed: threading.Condition
    running: int = 0
    waiting: deque[_Batch] = field(default_factory=deque)


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
        """The most images a frame of this request may carry, how long the first of them
        waits for others when a worker is free, and what the model's lane allows."""
        if header.image_count != 1 or header.describe or not header.model_sha256:
            return 1, 0.0, None
        lane = self._transport.lane(header.model_sha256)
        if lane.default:
            return self.default_model_max_size, 0.0, lane
        return (self.max_size, self.wait_seconds, lane) if batchable else (1, 0.0, lane)

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        """`batchable`: the model takes any batch size (dynamic batching applies)."""
        limit, wait, lane = self._policy(request.header, batchable)
        if limit <= 1:
            return self._transport.exchange(request)
        key = _batch_key(request.header)
        with self._lock:
            model = self._models.get(key)
            if model is None:
                model = self._models[key] = _Model(threading.Condition(self._lock))
            if model.running >= lane.places or model.waiting:  # it will wait
                waiting = sum(len(batch.requests) for batch in model.waiting)
                if waiting >= lane.queue_limit:
                    raise Overloaded(f"{waiting} requests are already waiting for a worker")
            batch = model.waiting[-1] if model.waiting else None
            leads = batch is None or len(batch.requests) >= batch.limit
            if leads:
                batch = _Batch(limit)
                model.waiting.append(batch)
            position = len(batch.requests)
            batch.requests.append(request)
            if len(batch.requests) >= batch.limit:
                batch.full.set()
        if leads:
            if wait > 0:
                batch.full.wait(wait)
            self._send_in_turn(key, model, batch, lane)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise copy.copy(batch.error)  # one instance per caller: tracebacks are per thread
        return batch.rows[position : position + 1], None  # float32 [1, classes], as unbatched

    def _send_in_turn(self, key: tuple, model: _Model, batch: _Batch, lane: LaneLimits) -> None:
        """Send `batch` once it is the oldest waiting and its model has a place free; past the
        lane's timeout it goes anyway, and the pool says why no worker takes it."""
        deadline = time.monotonic() + lane.timeout
        with self._lock:
            while model.waiting[0] is not batch or model.running >= lane.places:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                model.changed.wait(remaining)
            model.waiting.remove(batch)  # no one joins it from now on
            model.running += 1
        try:
            self._send(batch)
        finally:
            with self._lock:
                model.running -= 1
                if model.running == 0 and not model.waiting:
                    del self._models[key]
                model.changed.notify_all()

    def _send(self, batch: _Batch) -> None:
        first, count = batch.requests[0], len(batch.requests)
        if count > 1:
            header = dataclasses.replace(first.header, image_count=count)
            first = Request(header, first.model, b"".join(r.pixels for r in batch.requests))
        BATCH_SIZE.observe(count)
        try:
            batch.rows, _ = self._transport.exchange(first)
        except ServiceError as exc:
            batch.error = exc
        except BaseException as exc:
            batch.error = ServiceError(f"the batch failed: {exc}")
            raise
        finally:
            batch.done.set()

    def trust(self, sha256: str) -> None:
        self._transport.trust(sha256)

    def preload(self, request: Request) -> None:
        self._transport.preload(request)

    def close(self) -> None:
        self._transport.close()
