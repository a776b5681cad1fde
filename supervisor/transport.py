"""What every way of reaching workers offers the frontend: a Request in, probability rows (and
for describe frames the model's description) out, or the ServiceError that stopped it."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from protocol import Request

# Probability rows, float32 [images, classes], and the model's description or None.
Answer = tuple[np.ndarray, dict[str, Any] | None]


class Transport(Protocol):
    sandboxed: bool  # whether models run inside the sandbox (supervisor/sandbox.py)

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        """`batchable`: the model takes any batch size, so the request may share a frame with
        others; only the Batcher acts on it."""
        ...

    def trust(self, sha256: str) -> None:
        """Run this model (the service's default) apart from uploads: it is ours."""
        ...

    def preload(self, request: Request) -> None:
        """Trust the model of `request` and load it wherever models stay loaded (the pool's
        warm-up)."""
        ...

    def close(self) -> None: ...
