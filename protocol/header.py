"""Request headers: what a frame says about the model and pixels it carries, and how pixels
become the model's input (Normalization); their msgpack form, checked field by field. Pure: no
sockets, no files."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import msgpack

from protocol.errors import BadHeader, FrameTooLarge, LengthMismatch

MAX_MODEL_BYTES = 512 * 1024 * 1024
MAX_PIXEL_BYTES = 64 * 1024 * 1024

MODEL_FORMATS = ("graphdef", "tflite", "savedmodel", "keras")
NORMALIZATIONS = ("model_default", "raw", "mean_std")


Channels = float | tuple[float, float, float]  # one value for all three, or one per R, G, B


@dataclass(frozen=True)
class Normalization:
    """How the worker turns 8-bit pixels into the model's input values.

    `model_default`: raw pixels for quantized models, (x - 127.5) / 127.5 for float models.
    `raw`: the pixel values as they are. `mean_std`: (x - mean) / std, where mean and std are
    one number or one per channel (R, G, B), as Caffe-style models subtract a mean per channel.
    """

    mode: str = "model_default"
    mean: Channels = 127.5
    std: Channels = 127.5

    def to_wire(self) -> dict[str, Any]:
        if self.mode == "mean_std":
            return {"mode": self.mode, "mean": _wire(self.mean), "std": _wire(self.std)}
        return {"mode": self.mode}


def _wire(value: Channels) -> float | list[float]:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class RequestHeader:
    height: int
    width: int
    model_length: int
    model_format: str | None = None  # None: the worker detects it from the bytes
    input_tensor: str | None = None
    output_tensor: str | None = None
    image_count: int = 1
    channels: int = 3
    pixel_format: str = "RGB8"
    normalization: Normalization = field(default_factory=Normalization)
    # Ask for the model's description (tensors, size, normalisation) with the answer. With
    # image_count 0 the worker runs the model once on a uniform grey probe of its own input size;
    # for a graph that fixes none, at `probe_size` (height, width) when given, else at each size
    # a classifier takes, keeping the one that runs.
    describe: bool = False
    probe_size: tuple[int, int] | None = None
    # The model named by the sha256 of its bytes. With model_length 0 the worker uses its cached
    # copy, or answers `model_unknown` so the sender can resend the blob.
    model_sha256: str | None = None
    # Chosen by the sender for each frame of a stream; the answer echoes it, so an answer that
    # belongs to no frame in hand (forged, stray, out of step) is told apart.
    request_id: int | None = None
    # The sender's span as W3C's traceparent, when it traces: the supervisor that runs the
    # frame records its spans under it (supervisor/tracing.py). The worker ignores it.
    trace_parent: str | None = None
    # Set by the sender when no other frame is running on its workers, so that cores are
    # idle: the worker may run this frame on its solo threads (`--solo-threads`).
    solo: bool = False

    @property
    def pixels_length(self) -> int:
        return self.image_count * self.height * self.width * self.channels

    def to_wire(self) -> dict[str, Any]:
        return {
            "model_length": self.model_length,
            "model_format": self.model_format,
            "input_tensor": self.input_tensor,
            "output_tensor": self.output_tensor,
            "image_count": self.image_count,
            "height": self.height,
            "width": self.width,
            "channels": self.channels,
            "pixel_format": self.pixel_format,
            "pixels_length": self.pixels_length,
            "normalization": self.normalization.to_wire(),
            "describe": self.describe,
            "probe_size": list(self.probe_size) if self.probe_size else None,
            "model_sha256": self.model_sha256,
            "request_id": self.request_id,
            **({"traceparent": self.trace_parent} if self.trace_parent else {}),
            **({"solo": True} if self.solo else {}),
        }


def _require(wire: dict[str, Any], key: str, kind: type, optional: bool = False) -> Any:
    if key not in wire:
        raise BadHeader(f"header field {key!r} is missing")
    value = wire[key]
    if value is None and optional:
        return None
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BadHeader(f"header field {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _optional_flag(wire: dict[str, Any], key: str) -> bool:
    value = wire.get(key, False)
    if not isinstance(value, bool):
        raise BadHeader(f"header field {key!r} must be a boolean, got {value!r}")
    return value


def _optional_sha256(wire: dict[str, Any]) -> str | None:
    value = wire.get("model_sha256")
    if value is None:
        return None
    if not (isinstance(value, str) and len(value) == 64 and set(value) <= set("0123456789abcdef")):
        raise BadHeader(f"model_sha256 must be 64 lowercase hex digits, got {value!r}")
    return value


TRACEPARENT = re.compile(r"[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}")


def _optional_traceparent(wire: dict[str, Any]) -> str | None:
    value = wire.get("traceparent")
    if value is None:
        return None
    if not isinstance(value, str) or not TRACEPARENT.fullmatch(value):
        raise BadHeader(
            f"traceparent must be W3C's version-traceid-spanid-flags, got {value!r:.80}"
        )
    return value


MAX_REQUEST_ID = (1 << 64) - 1


def _optional_request_id(wire: dict[str, Any]) -> int | None:
    value = wire.get("request_id")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_REQUEST_ID:
        raise BadHeader(f"request_id must be an unsigned 64-bit integer, got {value!r}")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _channels(value: Any, name: str) -> Channels:
    if _number(value):
        return float(value)
    if isinstance(value, (list, tuple)) and len(value) == 3 and all(map(_number, value)):
        return (float(value[0]), float(value[1]), float(value[2]))
    raise BadHeader(f"normalization {name} must be a number or 3 numbers (R, G, B), got {value!r}")


def parse_normalization(raw: Any) -> Normalization:
    """A Normalization from its wire form (`Normalization.to_wire`); raises BadHeader."""
    if not isinstance(raw, dict) or raw.get("mode") not in NORMALIZATIONS:
        raise BadHeader(f"normalization must name a mode among {NORMALIZATIONS}, got {raw!r}")
    if raw["mode"] != "mean_std":
        return Normalization(mode=raw["mode"])
    mean, std = _channels(raw.get("mean"), "mean"), _channels(raw.get("std"), "std")
    if 0 in (std if isinstance(std, tuple) else (std,)):
        raise BadHeader("normalization std must not be 0")
    return Normalization(mode="mean_std", mean=mean, std=std)


MAX_PROBE_SIDE = 4096


def _optional_size(wire: dict[str, Any]) -> tuple[int, int] | None:
    value = wire.get("probe_size")
    if value is None:
        return None
    if (
        isinstance(value, (list, tuple))
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        and all(1 <= v <= MAX_PROBE_SIDE for v in value)
    ):
        return (value[0], value[1])
    raise BadHeader(f"probe_size must be [height, width] of 1 to {MAX_PROBE_SIDE}, got {value!r}")


def validate_header(header: RequestHeader) -> None:
    if header.model_format not in (None, *MODEL_FORMATS):
        raise BadHeader(f"model_format must be one of {MODEL_FORMATS} or nil")
    if header.channels != 3 or header.pixel_format != "RGB8":
        raise BadHeader("only 3-channel RGB8 pixels are supported")
    for name in ("height", "width"):
        if getattr(header, name) < 1:
            raise BadHeader(f"{name} must be at least 1")
    if header.image_count < (0 if header.describe else 1):
        raise BadHeader("image_count must be at least 1 (0 is allowed only with describe)")
    if header.model_length < 0:
        raise BadHeader("model_length must not be negative")
    if header.model_length > MAX_MODEL_BYTES:
        raise FrameTooLarge(f"model of {header.model_length} bytes exceeds {MAX_MODEL_BYTES}")
    if header.pixels_length > MAX_PIXEL_BYTES:
        raise FrameTooLarge(f"pixels of {header.pixels_length} bytes exceed {MAX_PIXEL_BYTES}")


def parse_header(encoded: bytes) -> RequestHeader:
    """Decode and check a msgpack header. Raises BadHeader, LengthMismatch or FrameTooLarge."""
    try:
        wire = msgpack.unpackb(encoded, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad input
        raise BadHeader(f"header is not valid msgpack: {exc}") from None
    if not isinstance(wire, dict):
        raise BadHeader("header must be a msgpack map")
    header = RequestHeader(
        height=_require(wire, "height", int),
        width=_require(wire, "width", int),
        model_length=_require(wire, "model_length", int),
        model_format=_require(wire, "model_format", str, optional=True),
        input_tensor=_require(wire, "input_tensor", str, optional=True),
        output_tensor=_require(wire, "output_tensor", str, optional=True),
        image_count=_require(wire, "image_count", int),
        channels=_require(wire, "channels", int),
        pixel_format=_require(wire, "pixel_format", str),
        normalization=parse_normalization(wire.get("normalization")),
        describe=_optional_flag(wire, "describe"),
        probe_size=_optional_size(wire),
        model_sha256=_optional_sha256(wire),
        request_id=_optional_request_id(wire),
        trace_parent=_optional_traceparent(wire),
        solo=_optional_flag(wire, "solo"),
    )
    validate_header(header)
    declared = _require(wire, "pixels_length", int)
    if declared != header.pixels_length:
        raise LengthMismatch(
            f"pixels_length {declared} != image_count*height*width*channels "
            f"= {header.pixels_length}"
        )
    return header
