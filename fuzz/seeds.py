"""Seed corpora for the fuzz targets, made fresh: valid frames, and small images in every format
and mode prepare_image handles (JPEG incl. CMYK, PNG incl. 16-bit and alpha, GIF, WebP, BMP)."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

from protocol import Normalization, Request, RequestHeader, encode_request


def frame_seeds() -> dict[str, bytes]:
    pixels = bytes(range(48)) * 4
    seeds = {}
    for i, normalization in enumerate((Normalization(), Normalization("raw"))):
        header = RequestHeader(
            height=8, width=8, model_length=5, normalization=normalization, model_sha256="a" * 64
        )
        seeds[f"frame-{i}"] = encode_request(Request(header, b"model", pixels))
    describe = RequestHeader(height=1, width=1, model_length=3, image_count=0, describe=True)
    seeds["describe"] = encode_request(Request(describe, b"abc", b""))
    return seeds


def image_seeds() -> dict[str, bytes]:
    base = Image.new("RGB", (12, 9))
    base.putdata(
        [(x * 20 % 256, y * 28 % 256, (x + y) * 9 % 256) for y in range(9) for x in range(12)]
    )
    variants = {
        "rgb.jpg": (base, "JPEG", {}),
        "cmyk.jpg": (base.convert("CMYK"), "JPEG", {}),
        "rgba.png": (base.convert("RGBA"), "PNG", {}),
        "gray16.png": (base.convert("I;16"), "PNG", {}),
        "palette.gif": (base.convert("P"), "GIF", {}),
        "rgb.webp": (base, "WEBP", {"lossless": True}),
        "rgb.bmp": (base, "BMP", {}),
    }
    seeds = {}
    for name, (image, fmt, options) in variants.items():
        buffer = io.BytesIO()
        image.save(buffer, format=fmt, **options)
        seeds[name] = buffer.getvalue()
    return seeds


def write(folder: Path, seeds: dict[str, bytes]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in seeds.items():
        (folder / name).write_bytes(data)
    return folder
