"""Shared fixtures: real models and photos, and a real gunicorn server on a free loopback port.

The photos and their expected answers live in tests/images (see its README); the models come
from `make models` into MODEL_DIR."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tflite_fixtures import custom_op_model

from tools.server import Server
from tools.server import start_gunicorn as start_server

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("MODEL_DIR", ROOT / "models")).resolve()
IMAGES = ROOT / "tests" / "images"

DEFAULT_MODEL = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
FROZEN_MODEL = MODELS / "mobilenet_v2_1.0_224_frozen.pb"
BIRD_MODEL = MODELS / "mobilenet_v2_1.0_224_inat_bird_quant.tflite"
IMAGENET_LABELS = MODELS / "imagenet_labels.txt"
BIRD_LABELS = MODELS / "inat_bird_labels.txt"


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


def start_gunicorn(
    tmp: Path, env: dict[str, str] | None = None, wrapper: list[str] | None = None
) -> Server:
    return start_server(tmp, MODELS, env, wrapper)


@pytest.fixture(scope="session")
def broken_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TFLite model whose operator is a custom op that no runtime has (tests/tflite_fixtures)."""
    path = tmp_path_factory.mktemp("broken") / "model_invoking_error.tflite"
    path.write_bytes(custom_op_model())
    return path


@pytest.fixture(scope="session")
def docker_engine_ready(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A Docker engine with the service's image built (make compose-test); a dockerd started
    for it is stopped afterwards."""
    from tools import docker_engine

    daemon = docker_engine.ready(log=tmp_path_factory.mktemp("docker") / "dockerd.log")
    yield
    if daemon is not None:
        daemon.terminate()
        daemon.wait(60)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_gunicorn(tmp_path_factory.mktemp("server"))
    yield started
    started.stop()


@pytest.fixture(scope="session")
def base_url(server: Server) -> str:
    return server.url


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of its own for registry tests, so registered models do not leak elsewhere."""
    server = start_gunicorn(tmp_path_factory.mktemp("registry"))
    yield server
    server.stop()
