"""What the tests share besides fixtures: where the real models and photos are and what they
answer (tests/images/README.md), starting a real server, making models in a process of its
own, and for the tests that run the frontend in-process, the Flask app from its own factory
with a fake transport in place of the workers (as gunicorn's tests give its arbiter a fake
worker class), so the HTTP rules are checked without processes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask

from frontend import create_app
from protocol import Request
from supervisor.settings import WorkerSettings
from supervisor.transport import Answer
from tools.paths import (  # noqa: F401  (the tests import them from here)
    BIRD_LABELS,
    BIRD_MODEL,
    DEFAULT_MODEL,
    FROZEN_MODEL,
    IMAGENET_LABELS,
    IMAGES,
    MODELS,
    ROOT,
)
from tools.server import Server
from tools.server import start_gunicorn as start_server

# How far a probability may move between runtimes and CPUs (XNNPACK and oneDNN kernels differ).
PROBABILITY_TOLERANCE = 0.02


@dataclass(frozen=True)
class Expected:
    image: Path
    model: str
    label: str
    probability: float  # of the top-1 label, from the model itself
    frozen_probability: float | None  # the same from the derived frozen GraphDef (imagenet)

    def __str__(self) -> str:  # readable parametrize ids
        return f"{self.image.name}-{self.model}"


def expected_rows(model: str) -> list[Expected]:
    with (IMAGES / "expected.tsv").open(newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return [
            Expected(
                IMAGES / r["file"],
                r["model"],
                r["expected_top1"],
                float(r["probability"]),
                float(r["frozen_probability"]) if r["frozen_probability"] else None,
            )
            for r in rows
            if r["model"] == model
        ]


# A TensorFlow spare costs about 4 s of CPU to start and most test servers never use one; the
# tests of spares ask for them. Without a spare, a model's first frame waits for its worker to
# import the runtime, which under the tests' load has taken over the default 30 s upload
# timeout: the tests of that timeout set their own.
TEST_SERVER_ENV = {"UPLOAD_SPARES": "0", "UPLOAD_TIMEOUT": "120"}
# The upload lane's spares as `make run` starts them (the upload timeout stays the tests' own).
SPARES = {"UPLOAD_SPARES": str(WorkerSettings().upload_spares)}


def start_gunicorn(
    tmp: Path, env: dict[str, str] | None = None, wrapper: list[str] | None = None
) -> Server:
    """The real server, without the upload lane's spare workers unless `env` asks for them."""
    return start_server(tmp, MODELS, {**TEST_SERVER_ENV, **(env or {})}, wrapper)


MALICIOUS_SECRET = "TOP-SECRET-8d1f3c"  # planted where the malicious corpus's readers look


def made_by(script: str, out: Path, *args: str) -> Path:
    """The models tests/`script` writes into `out`, made in a process of its own (it imports
    TensorFlow, which the tests' process never does)."""
    subprocess.run(
        [sys.executable, str(ROOT / "tests" / script), *args, str(out)],
        check=True,
        cwd=ROOT,
        timeout=600,
        capture_output=True,
    )
    return out


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
