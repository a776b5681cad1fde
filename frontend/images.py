"""The one image-preparation function: bytes of any image Pillow opens → RGB uint8 pixels at the
model's input size. Used by the page, the API and the frame-building CLI
(`python -m frontend.encode`) alike."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from frontend.errors import InvalidImage

# Bilinear, no crop: what the models' expected labels were computed with (see README).
RESIZE_FILTER = Image.Resampling.BILINEAR
DEFAULT_MAX_PIXELS = 50_000_000
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


def prepare_image(
    data: bytes, size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """RGB uint8 pixels of shape (height, width, 3) for `size` = (height, width).

    EXIF orientation is applied; palette, grayscale, CMYK, 16-bit and alpha (composited on
    white) images become RGB; the first frame of an animation is used. JPEGs are decoded at a
    reduced scale (draft mode) when that still leaves at least the target size.
    """
    if not data:
        raise InvalidImage("the image is empty (0 bytes)")
    height, width = size
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > max_pixels:
            raise InvalidImage(
                f"the image is {image.width}x{image.height} = {image.width * image.height} "
                f"pixels, over the limit of {max_pixels} pixels (MAX_IMAGE_PIXELS)"
            )
        if image.format == "JPEG":
            image.draft("RGB", (width, height))
        image.load()
        image = ImageOps.exif_transpose(image)
        image = _to_rgb(image).resize((width, height), RESIZE_FILTER)
    except InvalidImage:
        raise
    except UnidentifiedImageError:
        raise InvalidImage("the file is not an image in any format Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"the image could not be decoded: {exc}") from None
    return np.asarray(image, dtype=np.uint8)
