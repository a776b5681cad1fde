"""Why this label: occlusion sensitivity. The photo is classified again with a grey patch over
each region in turn, all in one frame to one worker; how far the label's probability falls
with a region hidden is how much that region mattered. It needs nothing from the model but its
answers, so it works on quantized TFLite models and frozen graphs alike."""

from __future__ import annotations

import base64
import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

PATCH_GREY = 128  # the middle of the pixel range: about zero for every normalisation here
MIN_GRID, MAX_GRID, DEFAULT_GRID = 3, 12, 7


@dataclass(frozen=True)
class OcclusionMap:
    index: int  # the class explained
    probability: float  # its probability on the whole photo
    grid: np.ndarray  # [rows, columns]: its fall with that region hidden (negative: it rose)
    boxes: list[list[tuple[float, float, float, float]]]  # each region (left, top, right, bottom)
    heat: np.ndarray  # [h, w] at the model's input size: the mean fall over the patches there

    def strongest(self) -> dict[str, Any]:
        row, column = np.unravel_index(int(np.argmax(self.grid)), self.grid.shape)
        left, top, right, bottom = self.boxes[row][column]
        return {
            "row": int(row),
            "column": int(column),
            "fall": round(float(self.grid[row, column]), 6),
            "box": {"left": left, "top": top, "right": right, "bottom": bottom},
        }


def _starts(length: int, patch: int, count: int) -> list[int]:
    return [round(i * (length - patch) / (count - 1)) for i in range(count)]


def occlusion_map(
    pixels: np.ndarray,
    classify: Callable[[np.ndarray], np.ndarray],
    index: int | None = None,
    grid: int = DEFAULT_GRID,
) -> OcclusionMap:
    """`pixels`: one prepared image [h, w, 3]; `classify`: probability rows for a batch.
    Patches are twice the grid step, so neighbouring regions overlap by half. `index`: the
    class to explain; None: the top one."""
    height, width, _ = pixels.shape
    patch_h, patch_w = max(1, 2 * height // (grid + 1)), max(1, 2 * width // (grid + 1))
    tops, lefts = _starts(height, patch_h, grid), _starts(width, patch_w, grid)
    batch = np.repeat(pixels[np.newaxis], 1 + grid * grid, axis=0)
    for n, (top, left) in enumerate((t, x) for t in tops for x in lefts):
        batch[1 + n, top : top + patch_h, left : left + patch_w] = PATCH_GREY
    rows = classify(batch)
    whole = rows[0]
    index = int(np.argmax(whole)) if index is None else index
    falls = (whole[index] - rows[1:, index]).reshape(grid, grid)
    total, covered = np.zeros((height, width)), np.zeros((height, width))
    for (r, top), (c, left) in ((a, b) for a in enumerate(tops) for b in enumerate(lefts)):
        total[top : top + patch_h, left : left + patch_w] += falls[r, c]
        covered[top : top + patch_h, left : left + patch_w] += 1
    boxes = [
        [
            (
                round(left / width, 4),
                round(top / height, 4),
                round((left + patch_w) / width, 4),
                round((top + patch_h) / height, 4),
            )
            for left in lefts
        ]
        for top in tops
    ]
    return OcclusionMap(index, float(whole[index]), falls, boxes, total / np.maximum(covered, 1))


def overlay_png(pixels: np.ndarray, heat: np.ndarray) -> bytes:
    """The prepared photo with the regions that raised the label in red, the stronger the
    redder (falls scaled by the largest); regions that lowered it are left as they are."""
    strength = np.clip(heat / max(float(heat.max()), 1e-9), 0.0, 1.0)[..., np.newaxis]
    red = np.array([255, 32, 32], dtype=np.float32)
    mixed = pixels.astype(np.float32) * (1 - 0.6 * strength) + red * 0.6 * strength
    buffer = io.BytesIO()
    Image.fromarray(np.clip(mixed, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()
