"""The one image-preparation function, on real photos and on every awkward kind of image."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from helpers import IMAGES
from PIL import Image

import frontend.images
from frontend.errors import InvalidImage
from frontend.images import prepare_image

SIZE = (224, 224)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def test_real_photo_becomes_rgb_uint8_at_model_size() -> None:
    pixels = prepare_image((IMAGES / "grace_hopper.jpg").read_bytes(), SIZE)
    assert pixels.shape == (224, 224, 3) and pixels.dtype == np.uint8
    assert 40 < pixels.mean() < 220


@pytest.mark.parametrize("size", [(224, 224), (128, 128), (299, 299), (160, 192)])
def test_plain_jpegs_decode_to_the_same_pixels_as_pillow_alone(size, monkeypatch) -> None:
    photos = sorted(IMAGES.glob("*.jpg"))
    fast = [prepare_image(photo.read_bytes(), size) for photo in photos]
    exact_size = encode(Image.open(IMAGES / "cat.jpg").resize(size[::-1]), "JPEG", quality=90)
    fast.append(prepare_image(exact_size, size))
    monkeypatch.setattr(frontend.images, "_decode_plain_jpeg", lambda *_: None)
    pillow = [prepare_image(photo.read_bytes(), size) for photo in photos]
    pillow.append(prepare_image(exact_size, size))
    assert len(photos) >= 9
    for photo, a, b in zip([*photos, "exact size"], fast, pillow, strict=True):
        assert np.array_equal(a, b), photo


def test_plain_jpeg_path_is_taken_only_when_draft_would_not_reduce() -> None:
    photo = Image.open(IMAGES / "grace_hopper.jpg")
    small = Image.open(io.BytesIO(encode(photo.resize((640, 480)), "JPEG")))
    large = Image.open(io.BytesIO(encode(photo.resize((2400, 1800)), "JPEG")))
    assert frontend.images._decode_plain_jpeg(small, small.fp.getvalue(), SIZE) is not None
    assert frontend.images._decode_plain_jpeg(large, large.fp.getvalue(), SIZE) is None


def test_a_jpeg_whose_two_frame_headers_disagree_is_refused_not_decoded_big() -> None:
    # Pillow takes the last SOF (32x32, under the pixel limit); libjpeg reads the first
    # (20000x20000): the fast path must not decode what the limit was not checked against.
    plain = encode(Image.new("RGB", (32, 32), (10, 200, 30)), "JPEG")
    start = plain.index(b"\xff\xc0")
    end = start + 2 + struct.unpack(">H", plain[start + 2 : start + 4])[0]
    huge = bytearray(plain[start:end])
    huge[5:9] = struct.pack(">HH", 20000, 20000)
    crafted = plain[:start] + bytes(huge) + plain[start:]
    image = Image.open(io.BytesIO(crafted))
    assert image.size == (32, 32)
    assert frontend.images._decode_plain_jpeg(image, crafted, SIZE) is None
    with pytest.raises(InvalidImage, match="could not be decoded"):
        prepare_image(crafted, SIZE, max_pixels=1_000_000)


def test_non_square_size_is_height_then_width() -> None:
    assert prepare_image((IMAGES / "cat.jpg").read_bytes(), (128, 160)).shape == (128, 160, 3)


def test_exif_orientation_is_applied() -> None:
    # A 40x20 image, left half red, stored with orientation 6 (rotate 90° clockwise to view).
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels = prepare_image(encode(image, "JPEG", exif=exif.tobytes(), quality=95), (40, 20))
    # After rotating clockwise the red half is on top.
    assert pixels[2, 10, 0] > 200 and pixels[2, 10, 2] < 60
    assert pixels[37, 10, 2] > 200


def test_alpha_is_composited_on_white() -> None:
    transparent = Image.new("RGBA", (8, 8), (255, 0, 0, 0))
    assert (prepare_image(encode(transparent, "PNG"), (8, 8)) == 255).all()


@pytest.mark.parametrize(
    "mode, fmt",
    [("P", "PNG"), ("L", "PNG"), ("LA", "PNG"), ("CMYK", "JPEG"), ("I;16", "PNG"), ("1", "BMP")],
)
def test_every_mode_becomes_rgb(mode: str, fmt: str) -> None:
    image = Image.new("RGB", (16, 16), (200, 100, 50)).convert(mode)
    pixels = prepare_image(encode(image, fmt), (16, 16))
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8


def test_sixteen_bit_grayscale_keeps_its_range() -> None:
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    pixels = prepare_image(encode(Image.fromarray(ramp), "PNG"), (64, 64))
    assert pixels.max() >= 250 and pixels.min() <= 5


def test_animated_gif_uses_first_frame() -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    pixels = prepare_image(data, (8, 8))
    assert pixels[..., 0].mean() > 200 and pixels[..., 2].mean() < 50


def test_large_jpeg_uses_draft_decode_and_keeps_the_content() -> None:
    photo = Image.open(IMAGES / "grace_hopper.jpg").resize((2400, 2400))
    large = encode(photo, "JPEG", quality=90)
    small = prepare_image(encode(photo.resize((224, 224), Image.Resampling.BILINEAR), "PNG"), SIZE)
    drafted = prepare_image(large, SIZE)
    assert np.abs(drafted.astype(int) - small.astype(int)).mean() < 12


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"%PDF-1.4 not an image", "not an image"),
        ((IMAGES / "cat.jpg").read_bytes()[:5000], "truncated"),
    ],
)
def test_undecodable_input_is_invalid_image(data: bytes, words: str) -> None:
    with pytest.raises(InvalidImage, match=words):
        prepare_image(data, SIZE)


def test_pixel_limit_refuses_huge_images() -> None:
    data = encode(Image.new("L", (3000, 3000)), "PNG")
    with pytest.raises(InvalidImage, match="over the limit"):
        prepare_image(data, SIZE, max_pixels=1_000_000)


def test_a_400_megapixel_png_is_refused_from_its_header_in_plain_words() -> None:
    data = bytearray(encode(Image.new("RGB", (1, 1)), "PNG"))
    data[16:24] = (20_000).to_bytes(4, "big") * 2  # the IHDR's width and height
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    with pytest.raises(InvalidImage) as refused:
        prepare_image(bytes(data), SIZE, max_pixels=50_000_000)
    assert refused.value.message == (
        "the image is 20000x20000 = 400000000 pixels, over the limit of 50000000 pixels "
        "(MAX_IMAGE_PIXELS)"
    )
