"""The one image-preparation function: bytes of an image → RGB uint8 pixels at the model's input
size, cropped and resized as the model's preprocessing profile says (frontend/preprocessing.py).
Used by the page, the API and the frame-building CLI (`python -m frontend.encode`) alike.

Decoding is budgeted, since an image is as hostile as a model: only the formats photos come in
(JPEG, PNG, GIF, WebP, BMP; Pillow knows many more, EPS among them, which runs Ghostscript),
the size from the header checked before anything is decoded (MAX_IMAGE_PIXELS), JPEG scans
counted before decoding (a progressive JPEG of thousands of scans costs seconds of CPU per
scan pass), at most LARGE_DECODES large images decoded at once per process, and the memory of a
large decode handed back to the system afterwards. The memory prepared images take is known
before any is decoded, from the model's input size (check_pixels): the callers check it.

An upright colour JPEG, the common upload, is decoded by libjpeg-turbo straight into RGB
(simplejpeg), at the reduced scale Pillow's draft mode would choose: the same library, scale,
IDCT and upsampling as Pillow's decoder, so the same pixels, without Pillow's RGBX image and the
copy that packs it (about a third less CPU per 224 px request, and less per photo:
docs/performance.md). Pillow decodes everything else."""

from __future__ import annotations

import ctypes
import ctypes.util
import io
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import simplejpeg
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from frontend.errors import InvalidImage, ModelInputTooLarge, TooManyPixels
from frontend.preprocessing import DEFAULT, Profile
from protocol.header import MAX_PIXEL_BYTES, MAX_PROBE_SIDE

# A classifier sees a few hundred thousand pixels at most; 25 MP admits every common camera
# (phones save 12 MP by default, 24 MP for most system cameras) and refuses the rest.
DEFAULT_MAX_PIXELS = 25_000_000
FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
MAX_JPEG_SCANS = 64  # progressive JPEGs have about ten
# A large JPEG is decoded at a reduced scale (libjpeg's DCT scaling, the draft mode) no smaller
# than this many times the model's input, then resized. Measured against a full decode, top-1 of
# an ImageNet MobileNet V2 at 128 to 224 px over 22 photos (tests/make_variants.py): at 1x, 21 of
# 22 at 128 and 192 px; at 2x, 21 of 22 at 128 px; at 3x, all 22 at every size. At 224 px a
# 12 MP photo decodes at 1/4 scale with 2x or 3x alike (1/8 at 1x).
DRAFT_MARGIN = 3
# A decode that produces more than this many pixels counts against LARGE_DECODES and hands its
# memory back afterwards; a 12 MP photo decoded at 1/4 scale produces 0.75 MP and does neither
# (handing memory back costs the next decodes their page faults: 3 to 4 ms per photo).
LARGE_PIXELS = 4_000_000
_large_decodes = threading.BoundedSemaphore(2)
_libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
# Freed image memory kept for the next image (Pillow allocates and frees an image's blocks per
# image by default): a 224 px decode writes into warm memory instead of fresh pages. Large
# decodes empty this cache again (_decode_budget).
Image.core.set_blocks_max(4)
# Pillow's own bomb check is a process-wide setting with a message of its own; the size from the
# header is checked below instead, against the limit of the call, before anything is decoded.
Image.MAX_IMAGE_PIXELS = None


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: scale to 8 bits by the actual range, not by clipping.
        values = np.asarray(image, dtype=np.float32)
        top = float(values.max()) or 1.0
        image = Image.fromarray(np.clip(values * (255.0 / top), 0, 255).astype(np.uint8))
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB") if image.mode != "RGB" else image


def set_large_decodes(count: int) -> None:
    """How many large images one process decodes at once (LARGE_DECODES)."""
    global _large_decodes
    _large_decodes = threading.BoundedSemaphore(max(1, count))


@contextmanager
def _decode_budget(pixels: int) -> Iterator[None]:
    if pixels <= LARGE_PIXELS:
        yield
        return
    with _large_decodes:
        try:
            yield
        finally:
            # glibc keeps freed heap for reuse, and Pillow its freed image blocks (below): a
            # large decode's hundreds of MB go back now.
            Image.core.clear_cache()
            if hasattr(_libc, "malloc_trim"):
                _libc.malloc_trim(0)


def _jpeg_scans(data: bytes) -> int:
    """Start-of-scan markers: 0xFF is byte-stuffed inside entropy-coded data, so FF DA is only
    ever a marker."""
    return data.count(b"\xff\xda")


def _check_scans(image: Image.Image, data: bytes) -> None:
    """Only a progressive JPEG can make each of its scans cost a pass over the whole image; a
    sequential one's decoding is bounded by its own bytes. So only progressive ones are counted
    (counting is a small fraction of what the frontend does for a photo)."""
    if not image.info.get("progressive"):
        return
    scans = _jpeg_scans(data)
    if scans > MAX_JPEG_SCANS:
        raise InvalidImage(
            f"the JPEG has {scans} scans, over the limit of {MAX_JPEG_SCANS} "
            "(progressive JPEGs have about ten)"
        )


def _draft_scale(
    image_size: tuple[int, int], size: tuple[int, int], profile: Profile = DEFAULT
) -> int:
    """The denominator (1, 2, 4 or 8) of the scale a JPEG of `image_size` = (width, height) is
    decoded at for `size` = (height, width): as Pillow's draft mode (JpegImagePlugin.draft)
    chooses it, leaving at least DRAFT_MARGIN times `size`."""
    if not profile.draft:
        return 1
    image_width, image_height = image_size
    height, width = size
    ratio = min(image_width // (DRAFT_MARGIN * width), image_height // (DRAFT_MARGIN * height))
    return next((scale for scale in (8, 4, 2) if ratio >= scale), 1)


def decoded_pixels(
    data: bytes,
    size: tuple[int, int],
    profile: Profile = DEFAULT,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> int:
    """The pixels decoding `data` for `size` would produce, from its header alone: a JPEG that
    draft mode reduces counts at its reduced scale. Bytes that are no image, and images over
    `max_pixels`, count 0: they fail on their own, before any decoding."""
    try:
        jpeg = data.startswith(b"\xff\xd8")
        if jpeg:  # libjpeg-turbo reads a JPEG's header in microseconds, Pillow in tens
            image_height, image_width, _, _ = simplejpeg.decode_jpeg_header(data)
        else:
            with Image.open(io.BytesIO(data), formats=FORMATS) as image:
                image_width, image_height = image.size
    except (OSError, SyntaxError, ValueError, UnidentifiedImageError):
        return 0
    if image_width * image_height > max_pixels:
        return 0
    return _output_pixels((image_width, image_height), jpeg, size, profile)


def _output_pixels(
    image_size: tuple[int, int], jpeg: bool, size: tuple[int, int], profile: Profile
) -> int:
    """The pixels an image of `image_size` = (width, height) decodes to for `size`."""
    scale = _draft_scale(image_size, size, profile) if jpeg else 1
    image_width, image_height = image_size
    return -(-image_width // scale) * -(-image_height // scale)


def _decode_plain_jpeg(
    image: Image.Image, data: bytes, size: tuple[int, int], profile: Profile = DEFAULT
) -> np.ndarray | None:
    """RGB pixels of a colour JPEG with no EXIF rotation, from simplejpeg at the scale draft
    mode would choose (with the fast integer DCT when the profile's tool decodes so); None for
    any other JPEG, or one libjpeg-turbo finds a fault in, which Pillow then decodes or names as
    before."""
    if image.mode != "RGB" or image.getexif().get(ExifTags.Base.Orientation, 1) != 1:
        return None
    try:
        # Only what Pillow's header reading saw and the limits were checked against is decoded.
        height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        if (width, height) != image.size:
            return None
        # libjpeg-turbo scales by n/8 for any n: the smallest output at least 1/scale of the
        # photo, and no larger, is exactly 1/scale, the only scale Pillow's draft mode uses.
        scale = _draft_scale(image.size, size, profile)
        return simplejpeg.decode_jpeg(
            data,
            colorspace="RGB",
            fastdct=profile.fast_dct,
            min_height=-(-height // scale),
            min_width=-(-width // scale),
            min_factor=scale,
        )
    except ValueError:
        return None


def _decode_with_pillow(
    image: Image.Image, size: tuple[int, int], profile: Profile = DEFAULT
) -> Image.Image:
    height, width = size
    if image.format == "JPEG" and profile.draft:
        image.draft("RGB", (DRAFT_MARGIN * width, DRAFT_MARGIN * height))
    image.load()
    ImageOps.exif_transpose(image, in_place=True)  # without it, a copy every time
    return _to_rgb(image)


def prepare_image(
    data: bytes,
    size: tuple[int, int],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    profile: Profile = DEFAULT,
) -> np.ndarray:
    """RGB uint8 pixels of shape (height, width, 3) for `size` = (height, width), cropped and
    resized as `profile` says.

    EXIF orientation is applied; palette, grayscale, CMYK, 16-bit and alpha (composited on
    white) images become RGB; the first frame of an animation is used. JPEGs are decoded at a
    reduced scale (draft mode) when the profile allows it and that still leaves at least
    DRAFT_MARGIN times the target.
    """
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=FORMATS)
        pixels = image.width * image.height
        if pixels > max_pixels:
            raise InvalidImage(
                f"the image is {image.width}x{image.height} = {pixels} pixels, over the limit "
                f"of {max_pixels} pixels (MAX_IMAGE_PIXELS)"
            )
        jpeg = image.format == "JPEG"
        if jpeg:
            _check_scans(image, data)
        with _decode_budget(_output_pixels(image.size, jpeg, size, profile)):
            decoded = _decode_plain_jpeg(image, data, size, profile) if jpeg else None
            prepared = profile.resize(
                decoded if decoded is not None else _decode_with_pillow(image, size, profile),
                size,
            )
            # Free the decoded image before the budget hands memory back to the system.
            del decoded
            image.close()
    except InvalidImage:
        raise
    except UnidentifiedImageError:
        raise InvalidImage(
            f"the file is not an image in a format this service reads ({', '.join(FORMATS)})"
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"the image could not be decoded: {exc}") from None
    return prepared


# A model's input side at most this: a graph may declare any size, and every image is resized
# to it (as the probe of a graph that fixes none may be at most).
MAX_INPUT_SIDE = MAX_PROBE_SIDE


def check_input_size(height: int, width: int) -> None:
    if max(height, width) > MAX_INPUT_SIDE:
        raise ModelInputTooLarge(
            f"the model's input is {height}x{width}; this service takes inputs up to "
            f"{MAX_INPUT_SIDE} pixels a side"
        )


def check_pixels(count: int, size: tuple[int, int], what: str) -> None:
    """`count` images prepared at `size` (height, width) fit in one frame's pixels
    (MAX_PIXEL_BYTES): the memory they take is known from the model before any is decoded."""
    height, width = size
    check_input_size(height, width)
    needed = count * height * width * 3
    if needed > MAX_PIXEL_BYTES:
        most = max(0, MAX_PIXEL_BYTES // (height * width * 3))
        raise TooManyPixels(
            f"{what}: {count} images at the model's {height}x{width} input take {needed} bytes, "
            f"over the {MAX_PIXEL_BYTES} a call may; send at most {most}"
        )
