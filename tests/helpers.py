"""Helpers for tests that run the frontend in-process: the Flask app from its own factory with a
fake transport in place of the workers (as gunicorn's tests give its arbiter a fake worker
class), so the HTTP rules are checked without processes. The real workers, models and servers
are in the end-to-end tests."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask

from frontend import create_app
from protocol import Request
from supervisor.transport import Answer

TFLITE_HEADER = b"\x1c\x00\x00\x00TFL3"  # a TFLite FlatBuffer's first bytes: what the sniff reads


def fake_model(
    classes: int = 3,
    answer: int = 0,
    size: int = 224,
    tag: str = "",
    dtype: str = "uint8",
    kind: str = "probabilities",
    tool: str | None = None,
) -> bytes:
    """Bytes the sniff takes for a TFLite model, which FakeTransport runs: a model of `classes`
    outputs that puts 0.9 on class `answer` for every image (`tag`: other bytes), whose input is
    `dtype`, whose outputs are `kind` (worker/inputs.py) and in which the worker recognises
    `tool`."""
    spec = {"classes": classes, "answer": answer, "size": size, "tag": tag, "dtype": dtype,
            "kind": kind, "tool": tool}  # fmt: skip
    return TFLITE_HEADER + json.dumps(spec).encode()


def labels_for(classes: int) -> bytes:
    return "".join(f"class {index}\n" for index in range(classes)).encode()


class FakeTransport:
    """Runs fake_model()s as a worker would, and any other model (the default's real bytes)
    as a 1001-class ImageNet classifier that answers class 0. Keeps the frames it was sent."""

    sandboxed = True

    def __init__(self) -> None:
        self.frames: list[Request] = []

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        self.frames.append(request)
        spec = {"classes": 1001, "answer": 0, "size": 224}
        if request.model.startswith(TFLITE_HEADER + b"{"):
            spec = json.loads(request.model[len(TFLITE_HEADER) :])
        dtype = spec.get("dtype", "uint8")
        count = max(1, request.header.image_count)
        rows = np.full((count, spec["classes"]), 0.1 / (spec["classes"] - 1), np.float32)
        rows[:, spec["answer"]] = 0.9
        if not request.header.describe:
            return rows, None
        return rows, {
            "format": "tflite",
            "input": {
                "name": "input",
                "height": spec["size"],
                "width": spec["size"],
                "size_source": "graph",
                "dtype": dtype,
                "quantization": [0.0078125, 128] if dtype == "uint8" else None,
                "batch": 1,
            },
            "output": {
                "name": "output",
                "classes": spec["classes"],
                "softmax_applied": False,
                "kind": spec.get("kind", "probabilities"),
            },
            "normalization": {"mode": "raw"}
            if dtype == "uint8"
            else {"mode": "mean_std", "mean": 127.5, "std": 127.5},
            "tool": spec.get("tool"),
        }

    def models_run(self) -> set[str]:
        """sha256 of every model sent a frame."""
        return {r.header.model_sha256 or hashlib.sha256(r.model).hexdigest() for r in self.frames}

    def trust(self, sha256: str) -> None:
        pass

    def preload(self, request: Request) -> None:
        pass

    def close(self) -> None:
        pass


def fake_app(tmp: Path, models: Path, **config: Any) -> tuple[Flask, FakeTransport]:
    """The frontend with a store in `tmp`, the default model from `models`, fake workers."""
    transport = FakeTransport()
    settings = {"TESTING": True, "MODEL_STORE": str(tmp / "store"), "MODEL_DIR": str(models)}
    return create_app({**settings, **config}, transport=transport), transport


def zip_of(members: dict[str, bytes]) -> bytes:
    """A zip archive of these members, in memory."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
