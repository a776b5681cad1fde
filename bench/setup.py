"""Where the benchmarks find models and photos (the same places the tests use), and the two
JPEGs they send."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tools.paths import (  # noqa: F401  (the benchmarks import them from here)
    DEFAULT_MODEL,
    FROZEN_MODEL,
    IMAGENET_LABELS,
    IMAGES,
    MODELS,
    ROOT,
)

RESULTS = ROOT / "bench" / "results"


def make_images(folder: Path) -> dict[str, Path]:
    photo = Image.open(IMAGES / "grace_hopper.jpg").convert("RGB")
    small, large = folder / "photo_224.jpg", folder / "photo_12mp.jpg"
    photo.resize((224, 224), Image.Resampling.BILINEAR).save(small, quality=92)
    photo.resize((4000, 3000), Image.Resampling.BICUBIC).save(large, quality=92)
    return {"224px": small, "12MP": large}
