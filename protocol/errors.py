"""The failure kinds every side of the service agrees on.

Each error has a stable `code` (written into the worker's JSON error answer), the worker's
process `exit_code`, and the HTTP `status` the frontend answers with. Declaring them once here
is what lets the worker, the CLI and the frontend report the same failure the same way.
"""

from __future__ import annotations

import signal


class ServiceError(Exception):
    """Base of every error that crosses the worker boundary."""

    code = "internal_error"
    exit_code = 1
    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


# --- frames: the bytes did not form a valid request -------------------------------------


class FrameError(ServiceError):
    """The bytes are not a well-formed request frame. The sender built it wrong."""

    code = "bad_frame"
    exit_code = 2
    status = 400


class TruncatedFrame(FrameError):
    code = "frame_truncated"


class BadMagic(FrameError):
    code = "frame_bad_magic"


class UnsupportedVersion(FrameError):
    code = "frame_unsupported_version"


class FrameTooLarge(FrameError):
    code = "frame_too_large"
    status = 413


class BadHeader(FrameError):
    code = "frame_bad_header"


class LengthMismatch(FrameError):
    code = "frame_length_mismatch"


# --- models: the frame was fine, the model was not ----------------------------------------


class ModelError(ServiceError):
    """The model could not be loaded or run. The uploader should fix the model."""

    code = "model_error"
    exit_code = 3
    status = 422


class InvalidModel(ModelError):
    code = "model_invalid"


class UnknownModelFormat(InvalidModel):
    """The bytes are none of the model formats the service takes (protocol/formats.py)."""

    code = "model_format_unknown"


class TensorNotFound(ModelError):
    code = "model_tensor_not_found"


class InputShapeMismatch(ModelError):
    code = "model_input_mismatch"


class OpNotAllowed(ModelError):
    """The model uses an operation outside the allowlist (file, I/O, loop, custom ops...)."""

    code = "model_op_not_allowed"


class ModelFailed(ModelError):
    """Loading succeeded but running the model raised (for example a custom op)."""

    code = "model_failed"


class ModelTooCostly(ModelError):
    """The graph's own shapes say it needs far more arithmetic or memory than a classifier."""

    code = "model_too_costly"


class ModelCrashed(ModelError):
    """An uploaded model crashed its worker, hung it past its timeout or made it write answers
    that were not its frame's. Not retried; refused at once for a while after."""

    code = "model_crashed"


# --- resources: the worker was stopped ----------------------------------------------------


class WorkerTimeout(ServiceError):
    code = "worker_timeout"
    exit_code = 4
    status = 504


class ResourceExhausted(ServiceError):
    code = "worker_resource_exhausted"
    exit_code = 5
    status = 507


class WorkerCrashed(ServiceError):
    """The worker died without writing an answer (a signal, an abort inside the runtime)."""

    code = "worker_crashed"
    exit_code = 6
    status = 502


class AnswerMismatch(WorkerCrashed):
    """An answer that does not echo the request id of the frame in hand: forged, stray or out of
    step. The worker that wrote it is killed; only the frame in hand fails."""

    code = "worker_answer_mismatch"


class ModelUnknown(ServiceError):
    """A frame named its model by sha256 and this worker does not hold it: resend with the blob."""

    code = "model_unknown"
    exit_code = 8
    status = 500


class WorkerUnavailable(ServiceError):
    code = "worker_unavailable"
    exit_code = 7
    status = 503


class LinkUnauthenticated(WorkerUnavailable):
    """The two ends of the frontend-worker link do not share one secret (protocol/link.py)."""

    code = "worker_link_unauthenticated"


class SandboxUnavailable(ServiceError):
    """Only the default model runs without the sandbox (ALLOW_UNSANDBOXED_MODELS overrides)."""

    code = "sandbox_unavailable"
    exit_code = 9
    status = 403


class Overloaded(WorkerUnavailable):
    """Every worker is busy and the queue is full: come back shortly (HTTP Retry-After)."""

    code = "overloaded"
    retry_after_seconds = 1


def exit_signal(status: int) -> signal.Signals | None:
    """The signal that ended a process with exit status `status`: negative for the process
    itself, 128 + the signal when bwrap reports its sandboxed child's death."""
    number = -status if status < 0 else status - 128 if 128 < status < 128 + 65 else 0
    try:
        return signal.Signals(number) if number else None
    except ValueError:
        return None


def describe_exit(status: int) -> str:
    killer = exit_signal(status)
    return f"killed by {killer.name}" if killer else f"exit {status}"


def error_for_exit(status: int, detail: str = "") -> ServiceError:
    """The error for a worker that ended with `status` without writing an answer. SIGXCPU,
    and SIGKILL past the hard limit, end a CPU overrun."""
    if exit_signal(status) in (signal.SIGXCPU, signal.SIGKILL):
        return ResourceExhausted(f"the worker exceeded its CPU limit ({describe_exit(status)})")
    return WorkerCrashed(
        f"the worker died ({describe_exit(status)})" + (f": {detail}" if detail else "")
    )


def _all_subclasses(cls: type[ServiceError]) -> list[type[ServiceError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


ERRORS_BY_CODE: dict[str, type[ServiceError]] = {c.code: c for c in _all_subclasses(ServiceError)}


def error_from_code(code: str, message: str) -> ServiceError:
    """Rebuild the error a worker reported, so callers can catch it by type."""
    return ERRORS_BY_CODE.get(code, ServiceError)(message)
