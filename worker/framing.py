"""Reading request frames from any byte source (a pipe, a socket) straight into their buffers."""

from __future__ import annotations

from collections.abc import Callable

from protocol import FrameReader, Request, TruncatedFrame


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
