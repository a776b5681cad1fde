"""Configuration: every setting comes from an environment variable with a sane default.
The README lists them all; `create_app(test_config)` overrides them for tests. The settings of
the workers themselves are the supervisor's (supervisor/config.py), read the same way."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supervisor import config as supervisor_config

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# name: (default, type); the environment variable has the same name.
SETTINGS: dict[str, tuple[Any, type]] = {
    "MODEL_DIR": (str(PROJECT_ROOT / "models"), str),
    "DEFAULT_MODEL": ("mobilenet_v2_1.0_224_quant.tflite", str),
    "DEFAULT_LABELS": ("imagenet_labels.txt", str),
    "MODEL_STORE": (str(PROJECT_ROOT / "model-store"), str),  # registered models
    "MAX_MODEL_BYTES": (100 * 1024 * 1024, int),  # per registered model; over it: 413
    "STORE_MAX_MODELS": (200, int),  # registered models the store may hold; over it: 507
    "STORE_MAX_BYTES": (2 * 1024 * 1024 * 1024, int),  # bytes of model files it may hold
    "REGISTRATIONS_PER_HOUR": (30, int),  # per client address; over it: 429
    "INPUT_SIZE": (224, int),
    "WORKER_TRANSPORT": ("pool", str),  # "pool", "process" or "tcp"
    "WORKER_ADDRESS": ("127.0.0.1:9000", str),  # host:port of the worker service (tcp)
    "MAX_CONTENT_LENGTH": (128 * 1024 * 1024, int),  # bytes per HTTP request
    "MAX_IMAGE_PIXELS": (25_000_000, int),  # over it: 400, checked before decoding
    "MAX_IMAGES_PER_CALL": (64, int),  # image parts in one classify call; over it: 413
    "MAX_JSON_BYTES": (16 * 1024 * 1024, int),  # JSON bodies of /v2 and /v1/models; over it: 413
    "LARGE_DECODES": (2, int),  # images over 4 MP decoded at once per gunicorn process
    "DEFAULT_TOP_K": (5, int),
    "READY_CHECK_SECONDS": (10.0, float),  # /readyz answers from a check at most this old
    # Uploaded or registered models one client may have running at once (per gunicorn process).
    "UPLOADS_PER_CLIENT": (2, int),
    # Proxies in front whose X-Forwarded-For to believe (python -m frontend sets 1 for its nginx).
    "TRUSTED_PROXY_HOPS": (0, int),
    "ADMIN_TOKEN": ("", str),  # bearer token for registering and deleting models; "": open
    "API_TOKEN": ("", str),  # bearer token for classifying; "": open
    **supervisor_config.SETTINGS,
}


def from_environment(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    return supervisor_config.from_environment(SETTINGS, environ)
