"""Request frames: the bytes a client sends a worker. Pure: no sockets, no files.

A frame is a 10-byte preamble (magic, version, header length), a msgpack header, the model
blob and the pixels. Every length is explicit; see protocol/README.md for the byte layout.
"""

from __future__ import annotations

import dataclasses
import secrets
import struct
from dataclasses import dataclass, field
from typing import Any

import msgpack

from protocol.errors import (
    BadHeader,
    BadMagic,
    FrameTooLarge,
    LengthMismatch,
    TruncatedFrame,
    UnsupportedVersion,
)

MAGIC = b"MNSF"
VERSION = 1
PREAMBLE = struct.Struct(">4sHI")  # magic, version, header length

MAX_HEADER_BYTES = 64 * 1024
MAX_MODEL_BYTES = 512 * 1024 * 1024
MAX_PIXEL_BYTES = 64 * 1024 * 1024

MODEL_FORMATS = ("graphdef", "tflite", "savedmodel")
NORMALIZATIONS = ("model_default", "raw", "mean_std")


@dataclass(frozen=True)
class Normalization:
    """How the worker turns 8-bit pixels into the model's input values.

    `model_default`: raw pixels for quantized models, (x - 127.5) / 127.5 for float models.
    `raw`: the pixel values as they are. `mean_std`: (x - mean) / std.
    """

    mode: str = "model_default"
    mean: float = 127.5
    std: float = 127.5

    def to_wire(self) -> dict[str, Any]:
        if self.mode == "mean_std":
            return {"mode": self.mode, "mean": self.mean, "std": self.std}
        return {"mode": self.mode}


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
    # image_count 0 the worker runs the model once on a uniform grey probe of its own input size.
    describe: bool = False
    # The model named by the sha256 of its bytes. With model_length 0 the worker uses its cached
    # copy, or answers `model_unknown` so the sender can resend the blob.
    model_sha256: str | None = None
    # Chosen by the sender for each frame of a stream; the answer echoes it, so an answer that
    # belongs to no frame in hand (forged, stray, out of step) is told apart.
    request_id: int | None = None

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
            "model_sha256": self.model_sha256,
            "request_id": self.request_id,
        }


@dataclass(frozen=True)
class Request:
    header: RequestHeader
    model: bytes
    pixels: bytes


def encode_request(request: Request) -> bytes:
    """The complete frame for `request`. Raises the same errors a reader would."""
    header = request.header
    if len(request.model) != header.model_length:
        raise LengthMismatch(
            f"model is {len(request.model)} bytes but the header says {header.model_length}"
        )
    if len(request.pixels) != header.pixels_length:
        raise LengthMismatch(
            f"pixels are {len(request.pixels)} bytes but the header implies {header.pixels_length}"
        )
    encoded = msgpack.packb(header.to_wire(), use_bin_type=True)
    _validate_header(header)
    return b"".join(
        (PREAMBLE.pack(MAGIC, VERSION, len(encoded)), encoded, request.model, request.pixels)
    )


def encode_stamped_request(request: Request) -> tuple[int, bytes]:
    """A fresh random request id (which the answer must echo) and the frame that carries it."""
    request_id = secrets.randbits(63)
    header = dataclasses.replace(request.header, request_id=request_id)
    return request_id, encode_request(Request(header, request.model, request.pixels))


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


MAX_REQUEST_ID = (1 << 64) - 1


def _optional_request_id(wire: dict[str, Any]) -> int | None:
    value = wire.get("request_id")
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_REQUEST_ID:
        raise BadHeader(f"request_id must be an unsigned 64-bit integer, got {value!r}")
    return value


def parse_normalization(raw: Any) -> Normalization:
    """A Normalization from its wire form (`Normalization.to_wire`); raises BadHeader."""
    if not isinstance(raw, dict) or raw.get("mode") not in NORMALIZATIONS:
        raise BadHeader(f"normalization must name a mode among {NORMALIZATIONS}, got {raw!r}")
    if raw["mode"] != "mean_std":
        return Normalization(mode=raw["mode"])
    mean, std = raw.get("mean"), raw.get("std")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (mean, std)):
        raise BadHeader("normalization mean_std needs numeric mean and std")
    if std == 0:
        raise BadHeader("normalization std must not be 0")
    return Normalization(mode="mean_std", mean=float(mean), std=float(std))


def _validate_header(header: RequestHeader) -> None:
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
        model_sha256=_optional_sha256(wire),
        request_id=_optional_request_id(wire),
    )
    _validate_header(header)
    declared = _require(wire, "pixels_length", int)
    if declared != header.pixels_length:
        raise LengthMismatch(
            f"pixels_length {declared} != image_count*height*width*channels "
            f"= {header.pixels_length}"
        )
    return header


class FrameReader:
    """Incremental frame decoder: feed bytes with `receive_data`, take frames with `next_request`.

    Works the same over a pipe, a stream of frames or a socket. Buffered data never exceeds one
    frame's declared size, and the declared sizes are bounded before anything is allocated.
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._header: RequestHeader | None = None
        self._body_start = 0

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def needed(self) -> int:
        """How many more bytes the current frame needs (at least 1 before the header is read)."""
        if self._header is None:
            if len(self._buffer) < PREAMBLE.size:
                return PREAMBLE.size - len(self._buffer)
            _, _, header_length = PREAMBLE.unpack_from(self._buffer)
            return max(1, PREAMBLE.size + header_length - len(self._buffer))
        total = self._body_start + self._header.model_length + self._header.pixels_length
        return max(0, total - len(self._buffer))

    def next_request(self) -> Request | None:
        """The next complete request, or None when more bytes are needed."""
        if self._header is None and not self._read_header():
            return None
        assert self._header is not None
        header = self._header
        end = self._body_start + header.model_length + header.pixels_length
        if len(self._buffer) < end:
            return None
        model_end = self._body_start + header.model_length
        model = bytes(self._buffer[self._body_start : model_end])
        pixels = bytes(self._buffer[model_end:end])
        del self._buffer[:end]
        self._header = None
        return Request(header=header, model=model, pixels=pixels)

    def end_of_input(self) -> None:
        """Call when the peer closed: raises TruncatedFrame if a frame was cut short."""
        if self._buffer or self._header is not None:
            raise TruncatedFrame(
                f"input ended inside a frame ({len(self._buffer)} bytes buffered, "
                f"{self.needed()} more expected)"
            )

    def _read_header(self) -> bool:
        if len(self._buffer) < PREAMBLE.size:
            if not MAGIC.startswith(bytes(self._buffer[:4])):
                raise BadMagic(f"frame starts with {bytes(self._buffer[:4])!r}, not {MAGIC!r}")
            return False
        magic, version, header_length = PREAMBLE.unpack_from(self._buffer)
        if magic != MAGIC:
            raise BadMagic(f"frame starts with {magic!r}, not {MAGIC!r}")
        if version != VERSION:
            raise UnsupportedVersion(f"frame version {version}; this side speaks {VERSION}")
        if header_length > MAX_HEADER_BYTES:
            raise FrameTooLarge(f"header of {header_length} bytes exceeds {MAX_HEADER_BYTES}")
        if len(self._buffer) < PREAMBLE.size + header_length:
            return False
        self._header = parse_header(
            bytes(self._buffer[PREAMBLE.size : PREAMBLE.size + header_length])
        )
        self._body_start = PREAMBLE.size + header_length
        return True


def decode_request(data: bytes) -> Request:
    """Decode exactly one frame from `data`; trailing bytes are a LengthMismatch."""
    reader = FrameReader()
    reader.receive_data(data)
    request = reader.next_request()
    if request is None:
        reader.end_of_input()
        raise TruncatedFrame("input is empty: no frame")
    if reader.buffered:
        raise LengthMismatch(f"{reader.buffered} bytes follow the frame's declared end")
    return request
