"""Where the benchmarks find models and photos (the same places the tests use)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("MODEL_DIR", ROOT / "models")).resolve()
IMAGES = ROOT / "tests" / "images"
DEFAULT_MODEL = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
FROZEN_MODEL = MODELS / "mobilenet_v2_1.0_224_frozen.pb"
IMAGENET_LABELS = MODELS / "imagenet_labels.txt"
RESULTS = ROOT / "bench" / "results"
