"""Request frames: the bytes a client sends a worker. Pure: no sockets, no files (a reader is
given a function that fills its buffers, whatever the source).

A frame is a 10-byte preamble (magic, version, header length), a msgpack header
(protocol/header.py), the model blob and the pixels. Every length is explicit; see
protocol/README.md for the byte layout. The requests every sender makes are built here: one to
classify pixels, one to describe a model, and the same naming the model by sha256 alone.
"""

from __future__ import annotations

import dataclasses
import hashlib
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass

import msgpack

from protocol.errors import (
    BadMagic,
    FrameTooLarge,
    LengthMismatch,
    TruncatedFrame,
    UnsupportedVersion,
)
from protocol.header import Normalization, RequestHeader, parse_header, validate_header

MAGIC = b"MNSF"
VERSION = 1
PREAMBLE = struct.Struct(">4sHI")  # magic, version, header length

MAX_HEADER_BYTES = 64 * 1024
MODEL_DEFAULT = Normalization()  # the model's own: raw pixels if quantized, else [-1, 1]


@dataclass(frozen=True)
class Request:
    header: RequestHeader
    model: bytes
    pixels: bytes | bytearray | memoryview  # a reader's frames hold the buffer read into


def classify_request(
    pixels: bytes | bytearray | memoryview,
    shape: tuple[int, int, int],
    model: bytes,
    sha256: str,
    input_tensor: str | None = None,
    output_tensor: str | None = None,
    normalization: Normalization = MODEL_DEFAULT,
    trace_parent: str | None = None,
) -> Request:
    """A frame asking a worker to classify `shape` = (images, height, width) RGB8 pixels."""
    count, height, width = shape
    header = RequestHeader(
        height=height,
        width=width,
        image_count=count,
        model_length=len(model),
        input_tensor=input_tensor,
        output_tensor=output_tensor,
        normalization=normalization,
        model_sha256=sha256,
        trace_parent=trace_parent,
    )
    return Request(header, model, pixels)


def describe_request(
    model: bytes,
    sha256: str,
    input_tensor: str | None = None,
    output_tensor: str | None = None,
    normalization: Normalization = MODEL_DEFAULT,
    probe_size: tuple[int, int] | None = None,
) -> Request:
    """A frame asking a worker to load the model, run it once on a grey probe image of its
    own input size (for a graph that fixes none: `probe_size`, else the one that runs) and
    describe it."""
    header = RequestHeader(
        height=1,
        width=1,
        image_count=0,
        model_length=len(model),
        input_tensor=input_tensor,
        output_tensor=output_tensor,
        normalization=normalization,
        describe=True,
        probe_size=probe_size,
        model_sha256=sha256,
    )
    return Request(header, model, b"")


def by_reference(request: Request, sha256: str) -> Request:
    """The same request naming its model by sha256 alone, for a side that holds it."""
    header = dataclasses.replace(request.header, model_length=0, model_sha256=sha256)
    return Request(header, b"", request.pixels)


def model_sha256(request: Request) -> str:
    return request.header.model_sha256 or hashlib.sha256(request.model).hexdigest()


def encode_request_parts(request: Request) -> list[bytes | bytearray | memoryview]:
    """The frame for `request` as its parts (preamble and header, model, pixels), for a writer
    that gathers them (`os.writev`) rather than copying them into one buffer. Raises the same
    errors a reader would."""
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
    validate_header(header)
    head = PREAMBLE.pack(MAGIC, VERSION, len(encoded)) + encoded
    return [part for part in (head, request.model, request.pixels) if part]


def encode_request(request: Request) -> bytes:
    """The complete frame for `request`. Raises the same errors a reader would."""
    return b"".join(encode_request_parts(request))


def encode_stamped_request(
    request: Request,
) -> tuple[int, list[bytes | bytearray | memoryview]]:
    """A fresh random request id (which the answer must echo) and the parts of the frame that
    carries it (`encode_request_parts`)."""
    request_id = secrets.randbits(63)
    header = dataclasses.replace(request.header, request_id=request_id)
    return request_id, encode_request_parts(Request(header, request.model, request.pixels))


SCRATCH_BYTES = 1 << 20  # the largest read offered for a header or a model's bytes
PIXELS_FIRST_BYTES = 1 << 20  # a frame's pixel buffer before it grows (a 224 px batch of 6)


class FrameReader:
    """Incremental frame decoder with two ways in: feed bytes you read with `receive_data`, or
    read straight into the frame with `buffer` and `filled`; take frames with `next_request`.

    The second way copies nothing: `buffer()` hands out where the frame's next bytes go (never
    past its end) and the frame's pixels are the very buffer they were read into, which saves
    two copies of 150 KB per 224 px image over collecting bytes and slicing them.

    Works the same over a pipe, a stream of frames or a socket. The declared sizes are bounded
    before anything is allocated, and memory follows the bytes that arrived, not the sizes a
    header declares: the pixels' buffer starts at PIXELS_FIRST_BYTES and doubles as it fills;
    a model's bytes are collected as they arrive.
    """

    def __init__(self) -> None:
        self._unread = bytearray()  # given to receive_data, not yet taken into a frame
        self._scratch = bytearray()  # handed out by buffer() for header and model bytes
        self._start_frame()

    def _start_frame(self) -> None:
        self._head = bytearray()  # preamble and header
        self._header: RequestHeader | None = None
        self._model = bytearray()
        self._pixels = bytearray()
        self._pixels_filled = 0

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        self._unread += data

    @property
    def buffered(self) -> int:
        """Bytes held: the current frame's so far and any received beyond it."""
        return len(self._unread) + len(self._head) + len(self._model) + self._pixels_filled

    def needed(self) -> int:
        """How many more bytes the current frame needs (at least 1 before the header is read),
        counting what `receive_data` was given."""
        self._take_unread()
        return self._needed()

    def _needed(self) -> int:
        header = self._header
        if header is None:
            if len(self._head) < PREAMBLE.size:
                return PREAMBLE.size - len(self._head)
            _, _, header_length = PREAMBLE.unpack_from(self._head)
            return max(1, PREAMBLE.size + header_length - len(self._head))
        return header.model_length - len(self._model) + header.pixels_length - self._pixels_filled

    def buffer(self) -> memoryview:
        """Where the frame's next bytes go: read at most its length into it, then call `filled`
        with the count. Only while nothing given to `receive_data` is waiting."""
        if self._unread:
            raise RuntimeError("buffer() while bytes given to receive_data are waiting")
        if self._in_pixels():
            _reserve(self._pixels, self._pixels_filled + 1, self._header.pixels_length)
            return memoryview(self._pixels)[self._pixels_filled :]
        self._scratch = bytearray(min(self._needed(), SCRATCH_BYTES))
        return memoryview(self._scratch)

    def filled(self, count: int) -> None:
        """`count` bytes were read into the last `buffer()`."""
        if self._in_pixels():
            self._pixels_filled += count
        else:
            with memoryview(self._scratch) as view:
                self._consume(view[:count])

    def next_request(self) -> Request | None:
        """The next complete request, or None when more bytes are needed."""
        self._take_unread()
        header = self._header
        if header is None or not self._complete(header):
            return None
        request = Request(header=header, model=bytes(self._model), pixels=self._pixels)
        self._start_frame()
        return request

    def end_of_input(self) -> None:
        """Call when the peer closed: raises TruncatedFrame if a frame was cut short."""
        if self.buffered or self._header is not None:
            raise TruncatedFrame(
                f"input ended inside a frame ({self.buffered} bytes buffered, "
                f"{self.needed()} more expected)"
            )

    def _complete(self, header: RequestHeader) -> bool:
        return (
            len(self._model) == header.model_length and self._pixels_filled == header.pixels_length
        )

    def _in_pixels(self) -> bool:
        header = self._header
        return header is not None and len(self._model) == header.model_length

    def _take_unread(self) -> None:
        if self._unread:
            with memoryview(self._unread) as view:
                used = self._consume(view)
            del self._unread[:used]

    def _consume(self, data: memoryview) -> int:
        """Take what the current frame still needs from `data`; returns how many bytes."""
        used = 0
        while used < len(data):
            header = self._header
            if header is None:
                take = min(self._needed(), len(data) - used)
                self._head += data[used : used + take]
                used += take
                self._read_header()
            elif len(self._model) < header.model_length:
                take = min(header.model_length - len(self._model), len(data) - used)
                self._model += data[used : used + take]
                used += take
            elif self._pixels_filled < header.pixels_length:
                start = self._pixels_filled
                take = min(header.pixels_length - start, len(data) - used)
                _reserve(self._pixels, start + take, header.pixels_length)
                self._pixels[start : start + take] = data[used : used + take]
                self._pixels_filled += take
                used += take
            else:
                break  # the frame is complete; the rest belongs to the next one
        return used

    def _read_header(self) -> None:
        head = self._head
        if len(head) < PREAMBLE.size:
            if not MAGIC.startswith(bytes(head[:4])):
                raise BadMagic(f"frame starts with {bytes(head[:4])!r}, not {MAGIC!r}")
            return
        magic, version, header_length = PREAMBLE.unpack_from(head)
        if magic != MAGIC:
            raise BadMagic(f"frame starts with {magic!r}, not {MAGIC!r}")
        if version != VERSION:
            raise UnsupportedVersion(f"frame version {version}; this side speaks {VERSION}")
        if header_length > MAX_HEADER_BYTES:
            raise FrameTooLarge(f"header of {header_length} bytes exceeds {MAX_HEADER_BYTES}")
        if len(head) < PREAMBLE.size + header_length:
            return
        header = parse_header(bytes(head[PREAMBLE.size :]))
        self._pixels = bytearray(min(header.pixels_length, PIXELS_FIRST_BYTES))
        self._header = header


def _reserve(pixels: bytearray, count: int, limit: int) -> None:
    """Room in `pixels` for at least `count` bytes, never past `limit`: doubling keeps the
    copies made by growing under one more pass over the pixels."""
    have = len(pixels)
    if have < count:
        pixels += bytes(min(limit, max(count, 2 * have)) - have)


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


def read_request(
    readinto: Callable[[memoryview], int | None], allow_eof: bool = False
) -> Request | None:
    """Exactly one frame, reading never past its end (the next frame of a stream stays unread).
    `readinto` fills a buffer and returns the count, 0 at the end of input (a raw file's or a
    socket's `readinto` / `recv_into`).

    The reader bounds every declared length before allocating. With `allow_eof`, an input that
    ends cleanly before a frame gives None; an input that ends inside a frame always raises.
    """
    reader = FrameReader()
    while (request := reader.next_request()) is None:
        count = readinto(reader.buffer())
        if not count:
            reader.end_of_input()
            if allow_eof:
                return None
            raise TruncatedFrame("the input ended before a frame")
        reader.filled(count)
    return request
