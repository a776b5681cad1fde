"""Fuzz target: the protocol decoder. Any bytes either decode to a request or raise one of the
named FrameErrors; the incremental reader fed in small pieces agrees with the one-shot decoder.

    python -m fuzz.frame_target CORPUS_DIR [libFuzzer flags]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports():
    from protocol import FrameError, FrameReader, decode_request


def test_one_input(data: bytes) -> None:
    try:
        whole = decode_request(data)
    except FrameError:
        whole = None
    reader = FrameReader()
    first = None
    try:
        for start in range(0, len(data), 7):
            reader.receive_data(data[start : start + 7])
            first = first or reader.next_request()
        first = first or reader.next_request()
    except FrameError:
        return
    if whole is not None:
        assert first == whole, "the incremental reader disagrees with decode_request"


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
