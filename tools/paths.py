"""Where a checkout keeps the real models (`make models`, MODEL_DIR) and the photos the tests
and benchmarks use: declared once for both."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("MODEL_DIR", ROOT / "models")).resolve()
IMAGES = ROOT / "tests" / "images"

DEFAULT_MODEL = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
FROZEN_MODEL = MODELS / "mobilenet_v2_1.0_224_frozen.pb"
BIRD_MODEL = MODELS / "mobilenet_v2_1.0_224_inat_bird_quant.tflite"
IMAGENET_LABELS = MODELS / "imagenet_labels.txt"
BIRD_LABELS = MODELS / "inat_bird_labels.txt"
