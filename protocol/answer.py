"""Answers: what a worker writes back. One-shot mode writes JSON (the user's contract).

Success: a JSON array of probabilities, one per model output, summing to about 1 (for a batch,
an array of such arrays). Failure: `{"error": {"code": ..., "message": ...}}`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from typing import Any

import msgpack
import numpy as np

from protocol.errors import AnswerMismatch, ServiceError, WorkerCrashed, error_from_code


def encode_probabilities(probabilities: Sequence[float] | Sequence[Sequence[float]]) -> bytes:
    """One image's probabilities, or one list per image for a batch."""
    return json.dumps(list(probabilities), separators=(",", ":")).encode() + b"\n"


def encode_error(error: ServiceError) -> bytes:
    return json.dumps({"error": error.to_dict()}).encode() + b"\n"


def encode_description(description: dict[str, Any], probabilities: list[Any]) -> bytes:
    """The answer to a `describe` frame: the model's description and the probe's output."""
    body = {"model": description, "probabilities": probabilities}
    return json.dumps(body, separators=(",", ":")).encode() + b"\n"


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


def decode_answer(data: bytes) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Probability rows (float32 [images, classes], as decode_stream_answer gives them) and the
    model description if the frame asked for it; raises the ServiceError the worker reported."""
    answer = _load(data)
    description = None
    if isinstance(answer, dict) and isinstance(answer.get("model"), dict):
        description, answer = answer["model"], answer.get("probabilities")
    rows = (
        answer if isinstance(answer, list) and answer and isinstance(answer[0], list) else [answer]
    )
    well_formed = all(
        isinstance(row, list) and row and all(isinstance(p, (int, float)) for p in row)
        for row in rows
    )
    if well_formed and len({len(row) for row in rows}) == 1:
        return np.asarray(rows, dtype=np.float32), description
    raise WorkerCrashed(f"worker answer has an unexpected shape: {data[:200]!r}")


# --- stream answers (worker serve mode, the worker service) --------------------------------
# A 4-byte big-endian length, then a msgpack map: {"probabilities": float32 little-endian bytes,
# "rows": n, "classes": k} (plus "model": {...} for describe frames), or {"error": {...}}; both
# with "request_id", the frame's own echoed.
# Binary floats: JSON costs more than the model itself for 1001 classes at high rates.

ANSWER_LENGTH = struct.Struct(">I")
# A describe answer may carry a converted model (a Keras file frozen to a GraphDef), so the limit
# is a model's, not a row of probabilities'.
MAX_ANSWER_BYTES = 256 * 1024 * 1024


class AnswerReader:
    """Incremental reader of stream answers, the counterpart of `encode_stream_answer`: feed
    bytes with `receive_data`, take answer bodies with `next_answer`. The same over a worker's
    pipe and a TCP connection. An announced length over the limit is refused before anything
    is buffered for it."""

    def __init__(self, max_bytes: int = MAX_ANSWER_BYTES) -> None:
        self.max_bytes = max_bytes
        self._buffer = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def needed(self) -> int:
        """How many more bytes the next answer needs (0 when one is complete)."""
        if len(self._buffer) < ANSWER_LENGTH.size:
            return ANSWER_LENGTH.size - len(self._buffer)
        return max(0, ANSWER_LENGTH.size + self._length() - len(self._buffer))

    def next_answer(self) -> bytes | None:
        """The next complete answer body, or None when more bytes are needed."""
        if len(self._buffer) < ANSWER_LENGTH.size:
            return None
        end = ANSWER_LENGTH.size + self._length()
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[ANSWER_LENGTH.size : end])
        del self._buffer[:end]
        return body

    def _length(self) -> int:
        (length,) = ANSWER_LENGTH.unpack_from(self._buffer)
        if length > self.max_bytes:
            raise WorkerCrashed(f"the worker announced an answer of {length} bytes")
        return length


def encode_stream_answer(
    rows: np.ndarray | list[list[float]] | None = None,
    description: dict[str, Any] | None = None,
    error: ServiceError | None = None,
    request_id: int | None = None,
) -> bytes:
    """The answer to the frame that carried `request_id` (echoed; None for a frame that could
    not be read)."""
    if error is not None:
        body: dict[str, Any] = {"error": error.to_dict()}
    else:
        assert rows is not None
        values = np.asarray(rows, dtype="<f4")
        body = {
            "probabilities": values.tobytes(),
            "rows": values.shape[0],
            "classes": values.shape[1],
        }
        if description is not None:
            body["model"] = description
    body["request_id"] = request_id
    encoded = msgpack.packb(body, use_bin_type=True)
    return ANSWER_LENGTH.pack(len(encoded)) + encoded


def _unpack(body: bytes) -> dict[str, Any]:
    try:
        answer = msgpack.unpackb(body, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise WorkerCrashed(f"worker answer is not msgpack: {exc}") from None
    if not isinstance(answer, dict):
        raise WorkerCrashed("worker answer is not a msgpack map")
    return answer


def decode_stream_answer(
    body: bytes, request_id: int | None = None
) -> tuple[np.ndarray, dict[str, Any] | None]:
    """Rows of probabilities (float32 [rows, classes]) and the description (or None); raises the
    reported ServiceError.
    With `request_id`, an answer that does not echo it raises AnswerMismatch first: it is not
    this frame's answer, whatever it says."""
    answer = _unpack(body)
    if request_id is not None and answer.get("request_id") != request_id:
        raise AnswerMismatch(
            f"the worker answered request {answer.get('request_id')!r} to request {request_id}"
        )
    if isinstance(answer.get("error"), dict):
        error = answer["error"]
        raise error_from_code(str(error.get("code")), str(error.get("message")))
    try:
        rows, classes = answer["rows"], answer["classes"]
        values = np.frombuffer(answer["probabilities"], dtype="<f4").reshape(rows, classes)
    except (KeyError, TypeError, ValueError) as exc:
        raise WorkerCrashed(f"worker answer has an unexpected shape: {exc}") from None
    return values, answer.get("model")
