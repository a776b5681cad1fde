"""Fuzz target: the one image-preparation function. Any bytes either become RGB uint8 pixels of
the asked size or raise InvalidImage (HTTP 400); any other exception is a bug.

    python -m fuzz.image_target CORPUS_DIR [libFuzzer flags]
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["frontend"]):
    from frontend.errors import InvalidImage
    from frontend.images import prepare_image

SIZE = (24, 32)


def test_one_input(data: bytes) -> None:
    try:
        pixels = prepare_image(data, SIZE, max_pixels=4_000_000)
    except InvalidImage:
        return
    assert pixels.shape == (*SIZE, 3) and pixels.dtype.name == "uint8"


if __name__ == "__main__":
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
