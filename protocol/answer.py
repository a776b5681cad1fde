"""Answers: what a worker writes back. One-shot mode writes JSON (the user's contract).

Success: a JSON array of probabilities, one per model output, summing to about 1 (for a batch,
an array of such arrays). Failure: `{"error": {"code": ..., "message": ...}}`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from protocol.errors import ServiceError, WorkerCrashed, error_from_code


def encode_probabilities(probabilities: Sequence[float] | Sequence[Sequence[float]]) -> bytes:
    """One image's probabilities, or one list per image for a batch."""
    return json.dumps(list(probabilities), separators=(",", ":")).encode() + b"\n"


def encode_error(error: ServiceError) -> bytes:
    return json.dumps({"error": error.to_dict()}).encode() + b"\n"


def decode_answer(data: bytes) -> list[float]:
    """Probabilities from a worker's answer; raises the ServiceError the worker reported."""
    try:
        answer = json.loads(data)
    except ValueError:
        raise WorkerCrashed(f"worker answered something that is not JSON: {data[:200]!r}") from None
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        error = answer["error"]
        raise error_from_code(str(error.get("code")), str(error.get("message")))
    if isinstance(answer, list) and all(isinstance(p, (int, float)) for p in answer):
        return [float(p) for p in answer]
    raise WorkerCrashed(f"worker answer has an unexpected shape: {data[:200]!r}")
