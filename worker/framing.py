"""Reading request frames from any byte source (a pipe's read, a socket's recv)."""

from __future__ import annotations

from collections.abc import Callable

from protocol import FrameReader, Request, TruncatedFrame

MAX_READ = 1 << 24


def read_request(read: Callable[[int], bytes], allow_eof: bool = False) -> Request | None:
    """Exactly one frame, reading never past its end (the next frame of a stream stays unread).

    The reader bounds every declared length before buffering. With `allow_eof`, an input that
    ends cleanly before a frame gives None; an input that ends inside a frame always raises.
    """
    reader = FrameReader()
    while (request := reader.next_request()) is None:
        chunk = read(min(reader.needed(), MAX_READ))
        if not chunk:
            reader.end_of_input()
            if allow_eof:
                return None
            raise TruncatedFrame("the input ended before a frame")
        reader.receive_data(chunk)
    return request
