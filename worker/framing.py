"""Reading one request frame from any byte source (a pipe's read, a socket's recv)."""

from __future__ import annotations

from collections.abc import Callable

from protocol import FrameReader, Request, TruncatedFrame

CHUNK = 1 << 20


def read_request(read: Callable[[int], bytes]) -> Request:
    """Exactly one frame; the reader bounds every declared length before buffering the bytes."""
    reader = FrameReader()
    while (request := reader.next_request()) is None:
        chunk = read(max(CHUNK, min(reader.needed(), 1 << 24)))
        if not chunk:
            reader.end_of_input()
            raise TruncatedFrame("the input ended before a frame")
        reader.receive_data(chunk)
    return request
