"""Shared fixtures: real models and photos, and a real gunicorn server on a free loopback port."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
MODELS = Path(os.environ.get("MODEL_DIR", ROOT / "models")).resolve()
SHARED = Path(os.environ.get("SHARED_DIR", ROOT.parent / "shared")).resolve()
IMAGES = SHARED / "images"

DEFAULT_MODEL = MODELS / "mobilenet_v2_1.0_224_quant.tflite"
FROZEN_MODEL = MODELS / "mobilenet_v2_1.0_224_frozen.pb"
BIRD_MODEL = MODELS / "mobilenet_v2_1.0_224_inat_bird_quant.tflite"
BROKEN_MODEL = MODELS / "model_invoking_error.tflite"
IMAGENET_LABELS = MODELS / "imagenet_labels.txt"
BIRD_LABELS = MODELS / "inat_bird_labels.txt"


@dataclass(frozen=True)
class Expected:
    image: Path
    model: str
    label: str

    def __str__(self) -> str:  # readable parametrize ids
        return f"{self.image.name}-{self.model}"


def expected_rows(model: str) -> list[Expected]:
    with (IMAGES / "expected.tsv").open(newline="") as handle:
        rows = csv.DictReader(handle, delimiter="\t")
        return [
            Expected(IMAGES / r["file"], r["model"], r["expected_top1"])
            for r in rows
            if r["model"] == model
        ]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            requests.get(url, timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_gunicorn(tmp: Path, env: dict[str, str] | None = None) -> Server:
    """The real server, started the way `make run` starts it, on a free loopback port."""
    port = free_port()
    log = tmp / f"gunicorn-{port}.log"
    full_env = {
        **os.environ,
        "MODEL_DIR": str(MODELS),
        "BIND": f"127.0.0.1:{port}",
        "MODEL_STORE": str(tmp / f"store-{port}"),
        **(env or {}),
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "frontend:create_app()",
        ],
        cwd=ROOT,
        env=full_env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    wait_until_up(server.url + "/healthz", process)
    return server


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
