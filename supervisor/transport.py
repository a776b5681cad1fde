"""What every way of reaching workers offers the frontend: a Request in, probability rows (and
for describe frames the model's description) out, or the ServiceError that stopped it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from protocol import ModelUnknown, Request, by_reference

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


def by_sha256_then_bytes(
    send: Callable[[Request], Answer], request: Request, sha256: str, held: set[str]
) -> tuple[Answer, bool]:
    """The answer of a worker or a replica that holds the models in `held` (by sha256): the
    model named by its sha256 alone when it holds it, sent in full when it does not or answers
    `model_unknown` (it evicted the model since); `held` kept up to date. Also whether the
    bytes went."""
    if sha256 in held:
        try:
            return send(by_reference(request, sha256)), False
        except ModelUnknown:
            held.discard(sha256)
    answer = send(request)
    held.add(sha256)  # only after it loaded and ran
    return answer, True
