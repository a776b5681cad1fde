"""Preprocessing profiles: how a decoded photo becomes a model's input pixels (its crop and its
resize) and, for a float input, the range its tool feeds it. A model answers best, and as its
user saw it answer, when it is fed as the tool that made it fed it: a registration picks the
profile of the tool it recognises in the model (worker/description.py), or the one asked for
(`preprocessing`), and every route (the API, the page, /infer, /v2, the CLI) prepares that
model's photos with it.

- `bilinear`: the service's own, for models of no known tool: the whole photo, Pillow's bilinear
  resize (which averages over every pixel it shrinks, so it does not alias), JPEGs decoded at a
  reduced scale when that still leaves three times the model's size. The range is detected
  (frontend/normalization.py).
- `tf_poets`: as TensorFlow's `label_image.py` (tensorflow/examples/label_image/label_image.py,
  and the copy in TensorFlow for Poets' scripts/): the whole photo decoded as `tf.image.
  decode_jpeg` decodes it (libjpeg's fast integer DCT), then TF1's `tf.image.resize_bilinear`
  (align_corners=False, half_pixel_centers=False: output pixel (y, x) samples the input at
  (y * in_h / out_h, x * in_w / out_w) between its four neighbours, with no averaging), and
  (x - 128) / 128.
- `teachable_machine`: as Teachable Machine's export snippet ("Keras" and "Tensorflow" code,
  `ImageOps.fit(image, size, Image.Resampling.LANCZOS)`): the largest centred crop of the
  model's aspect, resized with LANCZOS, and x / 127.5 - 1.
- `coral`: as pycoral's examples/classify_image.py (`Image.open(...).convert('RGB').resize(size,
  Image.LANCZOS)`): the whole photo, LANCZOS; a quantized input takes the pixels as they are
  (its own scale and zero point), a float one (x - 128) / 128.

EXIF orientation is applied whatever the profile (the tools feed a sideways photo sideways)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from frontend.errors import InvalidField
from protocol import Normalization


@dataclass(frozen=True)
class Profile:
    name: str
    crop_centre: bool
    draft: bool  # JPEGs may be decoded at a reduced scale (libjpeg's DCT scaling)
    fast_dct: bool  # libjpeg's fast integer DCT, as TensorFlow's decode_jpeg
    resampling: Image.Resampling | None  # Pillow's filter; None: TF1's resize_bilinear
    float_range: Normalization | None  # the tool's range for a float input; None: detected

    def resize(self, image: Image.Image | np.ndarray, size: tuple[int, int]) -> np.ndarray:
        """RGB uint8 (height, width, 3) pixels of `size` = (height, width)."""
        height, width = size
        if self.resampling is None:
            return tf1_resize_bilinear(np.asarray(image), size)
        if isinstance(image, np.ndarray):
            if image.shape[:2] == size and not self.crop_centre:
                return image
            image = Image.fromarray(image)
        if self.crop_centre:
            image = ImageOps.fit(image, (width, height), self.resampling)
        elif image.size != (width, height):
            image = image.resize((width, height), self.resampling)
        # Without the extra copy np.asarray(image) makes.
        return np.frombuffer(image.tobytes(), dtype=np.uint8).reshape(height, width, 3)


PM128 = Normalization("mean_std", 128.0, 128.0)
PROFILES = {
    profile.name: profile
    for profile in (
        Profile("bilinear", False, True, False, Image.Resampling.BILINEAR, None),
        Profile("tf_poets", False, False, True, None, PM128),
        Profile(
            "teachable_machine",
            True,
            False,
            False,
            Image.Resampling.LANCZOS,
            Normalization("mean_std", 127.5, 127.5),
        ),
        Profile("coral", False, False, False, Image.Resampling.LANCZOS, PM128),
    )
}
DEFAULT = PROFILES["bilinear"]


def profile(name: str | None) -> Profile:
    """The profile of that name (None: the service's own); InvalidField for no such one."""
    if name is None:
        return DEFAULT
    try:
        return PROFILES[name]
    except KeyError:
        raise InvalidField(
            f"preprocessing must be one of {', '.join(PROFILES)}, got {name!r}"
        ) from None


def tf1_resize_bilinear(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """TF1's tf.image.resize_bilinear (align_corners=False, half_pixel_centers=False) of uint8
    (h, w, 3) pixels, rounded back to uint8."""
    in_height, in_width = pixels.shape[:2]
    height, width = size

    def axis(out: int, into: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        at = np.arange(out, dtype=np.float64) * (into / out)
        low = np.floor(at).astype(np.intp)
        return low, np.minimum(low + 1, into - 1), (at - low).astype(np.float32)

    y0, y1, wy = axis(height, in_height)
    x0, x1, wx = axis(width, in_width)
    rows = pixels.astype(np.float32)
    top, bottom = rows[y0], rows[y1]
    wx = wx[np.newaxis, :, np.newaxis]
    upper = top[:, x0] + (top[:, x1] - top[:, x0]) * wx
    lower = bottom[:, x0] + (bottom[:, x1] - bottom[:, x0]) * wx
    blended = upper + (lower - upper) * wy[:, np.newaxis, np.newaxis]
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)
