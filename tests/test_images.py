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


# Photos large enough for draft mode to decode at 1/2, 1/4 and 1/8 for a 128 px model (at
# 224 px, 1/8 needs over 25 MP), sides odd so that the scaled sizes round up.
LARGE_SIDES = [(1345, 1347), (2689, 2017), (4001, 3001), (4097, 3073)]


@pytest.fixture(scope="module")
def large_jpegs() -> list[bytes]:
    photo = Image.open(IMAGES / "grace_hopper.jpg")
    return [encode(photo.resize(sides), "JPEG", quality=90) for sides in LARGE_SIDES]


@pytest.mark.parametrize("size", [(224, 224), (128, 128), (299, 299), (160, 192)])
def test_plain_jpegs_decode_to_the_same_pixels_as_pillow_alone(
    size, large_jpegs, monkeypatch
) -> None:
    photos = [photo.read_bytes() for photo in sorted(IMAGES.glob("*.jpg"))]
    exact_size = encode(Image.open(IMAGES / "cat.jpg").resize(size[::-1]), "JPEG", quality=90)
    images = [*photos, exact_size, *large_jpegs]
    fast = [prepare_image(image, size) for image in images]
    monkeypatch.setattr(frontend.images, "_decode_plain_jpeg", lambda *_: None)
    pillow = [prepare_image(image, size) for image in images]
    assert len(photos) >= 9
    for number, (a, b) in enumerate(zip(fast, pillow, strict=True)):
        assert np.array_equal(a, b), number


def test_plain_jpeg_path_decodes_at_the_scale_pillow_draft_mode_chooses(large_jpegs) -> None:
    scales = []
    for data in large_jpegs:
        image = Image.open(io.BytesIO(data))
        width = image.width
        fast = frontend.images._decode_plain_jpeg(image, data, (128, 128))
        image.draft("RGB", (3 * 128, 3 * 128))
        assert fast.shape == (image.height, image.width, 3)
        scales.append(round(width / image.width))
    assert scales == [2, 4, 4, 8]


def test_plain_jpeg_path_is_not_taken_for_rotated_or_grey_jpegs() -> None:
    photo = Image.open(IMAGES / "grace_hopper.jpg").resize((640, 480))
    exif = Image.Exif()
    exif[0x0112] = 6
    for data in (encode(photo, "JPEG", exif=exif), encode(photo.convert("L"), "JPEG")):
        assert frontend.images._decode_plain_jpeg(Image.open(io.BytesIO(data)), data, SIZE) is None


class CountingBudget:
    def __init__(self) -> None:
        self.entered = 0

    def __enter__(self) -> None:
        self.entered += 1

    def __exit__(self, *_) -> None:
        pass


def test_only_decodes_that_produce_many_pixels_count_as_large(large_jpegs, monkeypatch) -> None:
    """A 12 MP JPEG drafted to 0.75 MP neither waits for LARGE_DECODES nor hands memory back
    (which costs the next decodes their page faults); a 5 MP PNG does both."""
    budget, trims = CountingBudget(), []
    monkeypatch.setattr(frontend.images, "_large_decodes", budget)
    monkeypatch.setattr(frontend.images.Image.core, "clear_cache", lambda: trims.append(1))
    prepare_image(large_jpegs[2], SIZE)
    assert (budget.entered, trims) == (0, [])
    prepare_image(encode(Image.new("RGB", (2500, 2000), (9, 99, 199)), "PNG"), SIZE)
    assert (budget.entered, trims) == (1, [1])


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
