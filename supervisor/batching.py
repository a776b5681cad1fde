"""Dynamic batching: single-image requests for the same model that arrive within a short window
go to one worker as one frame of several images, for models whose batch dimension is unknown
(one run classifies any number of images). The first request of a batch waits up to
BATCH_WAIT_MS for others, or until BATCH_MAX_SIZE have joined, then sends them all; each caller
gets its own row back. Everything else passes straight through."""

from __future__ import annotations

import copy
import dataclasses
import threading
from dataclasses import dataclass, field

from protocol import Request, RequestHeader, ServiceError
from supervisor.metrics import BATCH_SIZE
from supervisor.transport import Answer, Transport


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
    requests: list[Request] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    rows: list[list[float]] = field(default_factory=list)
    error: ServiceError | None = None


class Batcher:
    def __init__(self, transport: Transport, max_size: int, wait_seconds: float) -> None:
        self._transport = transport
        self.max_size = max_size
        self.wait_seconds = wait_seconds
        self._lock = threading.Lock()
        self._open: dict[tuple, _Batch] = {}
        self.sandboxed = transport.sandboxed

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        header = request.header
        if not batchable or header.image_count != 1 or header.describe or not header.model_sha256:
            return self._transport.exchange(request)
        key = _batch_key(header)
        with self._lock:
            batch = self._open.get(key)
            leads = batch is None
            if batch is None:
                batch = self._open[key] = _Batch()
            position = len(batch.requests)
            batch.requests.append(request)
            if len(batch.requests) >= self.max_size:
                del self._open[key]
                batch.full.set()
        if leads:
            batch.full.wait(self.wait_seconds)
            with self._lock:
                if self._open.get(key) is batch:
                    del self._open[key]
            self._send(batch)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise copy.copy(batch.error)  # one instance per caller: tracebacks are per thread
        return batch.rows[position : position + 1], None  # float32 [1, classes], as unbatched

    def _send(self, batch: _Batch) -> None:
        first = batch.requests[0]
        header = dataclasses.replace(first.header, image_count=len(batch.requests))
        pixels = b"".join(request.pixels for request in batch.requests)
        BATCH_SIZE.observe(len(batch.requests))
        try:
            batch.rows, _ = self._transport.exchange(Request(header, first.model, pixels))
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
