"""Configuration: every setting comes from an environment variable with a sane default.
The README lists them all; `create_app(test_config)` overrides them for tests."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# name: (default, type); the environment variable has the same name.
SETTINGS: dict[str, tuple[Any, type]] = {
    "MODEL_DIR": (str(PROJECT_ROOT / "models"), str),
    "DEFAULT_MODEL": ("mobilenet_v2_1.0_224_quant.tflite", str),
    "DEFAULT_LABELS": ("imagenet_labels.txt", str),
    "MODEL_STORE": (str(PROJECT_ROOT / "model-store"), str),  # registered models
    "MAX_MODEL_BYTES": (100 * 1024 * 1024, int),  # per registered model; over it: 413
    "INPUT_SIZE": (224, int),
    "WORKER_TRANSPORT": ("pool", str),  # "pool", "process" or "tcp"
    "POOL_SIZE": (0, int),  # warm workers per gunicorn process; 0: cores / WEB_CONCURRENCY
    "POOL_QUEUE_LIMIT": (64, int),  # requests waiting for a worker before 503
    "WORKER_CACHE_MB": (1024, int),  # loaded-model budget of each warm worker
    # Dynamic batching for models that take any batch size; 1: off (see README, Performance).
    "BATCH_MAX_SIZE": (1, int),
    "BATCH_WAIT_MS": (2.0, float),  # how long the first request of a batch waits for others
    "WORKER_ADDRESS": ("127.0.0.1:9000", str),  # host:port for the tcp transport
    "WORKER_TIMEOUT": (60.0, float),  # wall-clock seconds per request
    "WORKER_MEMORY_MB": (4096, int),  # address-space limit of each worker process
    "WORKER_CPU_SECONDS": (120, int),
    "WORKER_THREADS": (1, int),
    "MAX_CONTENT_LENGTH": (128 * 1024 * 1024, int),  # bytes per HTTP request
    "MAX_IMAGE_PIXELS": (50_000_000, int),  # Pillow's decompression-bomb limit
    "DEFAULT_TOP_K": (5, int),
    # The sandbox around workers: "bwrap" (bubblewrap at BWRAP_PATH) or "none".
    "WORKER_SANDBOX": ("bwrap", str),
    "BWRAP_PATH": ("bwrap", str),
    # Without a sandbox, models other than the default are refused unless this is set.
    "ALLOW_UNSANDBOXED_MODELS": (False, bool),
    "OP_ALLOWLIST": (True, bool),  # refuse models using operations outside worker/allowlist.py
    "ADMIN_TOKEN": ("", str),  # bearer token for registering and deleting models; "": open
    "API_TOKEN": ("", str),  # bearer token for classifying; "": open
}


def _flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no setting: {raw!r} (use 1 or 0)")


def from_environment(environ: os._Environ[str] | dict[str, str] = os.environ) -> dict[str, Any]:
    config = {}
    for name, (default, kind) in SETTINGS.items():
        raw = environ.get(name)
        parse = _flag if kind is bool else kind
        config[name] = default if raw in (None, "") else parse(raw)
    return config
