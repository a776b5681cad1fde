"""Answers: what a worker writes back. One-shot mode writes JSON (the user's contract).

Success: a JSON array of probabilities, one per model output, summing to about 1 (for a batch,
an array of such arrays). Failure: `{"error": {"code": ..., "message": ...}}`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from protocol.errors import ServiceError, WorkerCrashed, error_from_code


def encode_probabilities(probabilities: Sequence[float] | Sequence[Sequence[float]]) -> bytes:
    """One image's probabilities, or one list per image for a batch."""
    return json.dumps(list(probabilities), separators=(",", ":")).encode() + b"\n"


def encode_error(error: ServiceError) -> bytes:
    return json.dumps({"error": error.to_dict()}).encode() + b"\n"


def encode_description(description: dict[str, Any], probabilities: list[Any]) -> bytes:
    """The answer to a `describe` frame: the model's description and the probe's output."""
    body = {"model": description, "probabilities": probabilities}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


def decode_description(data: bytes) -> tuple[dict[str, Any], list[float]]:
    answer = _load(data)
    if isinstance(answer, dict) and isinstance(answer.get("model"), dict):
        return answer["model"], answer.get("probabilities", [])
    raise WorkerCrashed(f"worker answer is not a model description: {data[:200]!r}")


def _load(data: bytes) -> Any:
    """The parsed answer; raises the ServiceError a worker reported."""
    try:
        answer = json.loads(data)
    except ValueError:
        raise WorkerCrashed(f"worker answered something that is not JSON: {data[:200]!r}") from None
    if isinstance(answer, dict) and isinstance(answer.get("error"), dict):
        error = answer["error"]
        raise error_from_code(str(error.get("code")), str(error.get("message")))
    return answer


def decode_answer(data: bytes) -> list[float]:
    """Probabilities from a worker's answer; raises the ServiceError the worker reported."""
    answer = _load(data)
    if isinstance(answer, list) and all(isinstance(p, (int, float)) for p in answer):
        return [float(p) for p in answer]
    raise WorkerCrashed(f"worker answer has an unexpected shape: {data[:200]!r}")
