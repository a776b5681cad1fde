"""Shared fixtures: real models and photos, the models the tests make, and real gunicorn servers
on free loopback ports. Plain helpers and the paths of models and photos are in
tests/helpers.py."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import making
import pytest
import requests
from helpers import (
    IMAGES,
    MALICIOUS_SECRET,
    ROOT,
    SPARES,
    Server,
    start_gunicorn,
)
from tflite_fixtures import custom_op_model

from frontend.images import prepare_image
from protocol import Request, classify_request


@pytest.fixture(scope="session")
def broken_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TFLite model whose operator is a custom op that no runtime has (tests/tflite_fixtures)."""
    path = tmp_path_factory.mktemp("broken") / "model_invoking_error.tflite"
    path.write_bytes(custom_op_model())
    return path


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The malicious-model corpus (tests/malicious_models.py) in `corpus / "models"`, a secret
    file beside it, and the path its file writer aims at."""
    folder = tmp_path_factory.mktemp("malicious")
    (folder / "secret.txt").write_text(MALICIOUS_SECRET)
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests" / "malicious_models.py"),
            str(folder / "models"),
            str(folder / "secret.txt"),
            str(folder / "written-by-model.txt"),
        ],
        check=True,
        capture_output=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"},
        timeout=300,
    )
    return folder


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


def pytest_configure(config: pytest.Config) -> None:
    making.configure(config)


def pytest_unconfigure(config: pytest.Config) -> None:
    making.unconfigure(config)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The modules whose tests need a made model run last, in their order: the making, which
    runs in the cores' idle time, then overlaps every other test instead of being waited for."""
    waiting = {
        item.module.__name__
        for item in items
        if isinstance(item, pytest.Function) and making.MADE.keys() & set(item.fixturenames)
    }
    items.sort(
        key=lambda item: isinstance(item, pytest.Function) and item.module.__name__ in waiting
    )


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start making the models the selected tests need as soon as they are known: they are
    made while the first tests run, not when the first test that needs them starts."""
    wanted = {name for item in session.items for name in getattr(item, "fixturenames", ())}
    for fixture in making.MADE.keys() & wanted:
        making.start(fixture)


@pytest.fixture(scope="session")
def retrained() -> Path:
    """A small MobileNet retrained with Keras and exported every way users do
    (tests/retrain_keras.py), made once."""
    return making.made("retrained")


@pytest.fixture(scope="session")
def variants() -> Path:
    """The retrained-graph shapes users bring, made of the frozen ImageNet graph
    (tests/make_variants.py), made once."""
    return making.made("variants")


@pytest.fixture(scope="session")
def kserve_venv() -> Path:
    """A virtualenv with kserve's clients (tests/make_kserve_venv.py), made once."""
    return making.made("kserve_venv")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_gunicorn(tmp_path_factory.mktemp("server"), SPARES)
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


# --- helpers the tests share, as fixtures -------------------------------------------------


def _register(url: str, model: Path, labels: Path | bytes, **fields: str) -> requests.Response:
    label_bytes = labels if isinstance(labels, bytes) else labels.read_bytes()
    return requests.post(
        url + "/api/v1/models",
        files={"model": (model.name, model.read_bytes()), "labels": ("labels.txt", label_bytes)},
        data=fields,
        timeout=120,
    )


@pytest.fixture(scope="session")
def register():
    return _register


def _classify_by_id(url: str, model_id: str, image: Path) -> dict:
    response = requests.post(
        f"{url}/api/v1/models/{model_id}/classify", files={"image": image.read_bytes()}, timeout=120
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="session")
def classify_by_id():
    return _classify_by_id


def _model_workers(server: Server, trusted_only: bool = False) -> list[int]:
    """PIDs of the serve-mode worker processes under this server (not the bwrap processes
    around them); `trusted_only`: the default model's lane alone (the upload lane's workers
    import their runtime at start)."""
    ps = subprocess.run(
        ["ps", "-ww", "-e", "-o", "pid=,ppid=,args="], capture_output=True, text=True
    )
    rows = [line.split(None, 2) for line in ps.stdout.splitlines()]
    parents = {int(pid): int(ppid) for pid, ppid, _ in rows}

    def under_server(pid: int) -> bool:
        while pid > 1:
            if pid == server.process.pid:
                return True
            pid = parents.get(pid, 1)
        return False

    return [
        int(pid)
        for pid, _, args in rows
        if "--serve" in args
        and not args.split()[0].endswith("bwrap")
        and not (trusted_only and "--import-runtime" in args)
        and under_server(int(pid))
    ]


@pytest.fixture(scope="session")
def model_workers():
    return _model_workers


def _wait_for(condition, seconds: float = 60, describe=None) -> None:
    """Until `condition()`; on a timeout the message carries `describe()`, what was seen."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(
                "condition not met in time" + (f": {describe()}" if describe else "")
            )
        time.sleep(0.2)


@pytest.fixture(scope="session")
def wait_for():
    return _wait_for


def _request_for(model: Path, photo: str, size: int = 224) -> Request:
    blob = model.read_bytes()
    pixels = prepare_image((IMAGES / photo).read_bytes(), (size, size)).tobytes()
    return classify_request(pixels, (1, size, size), blob, hashlib.sha256(blob).hexdigest())


@pytest.fixture(scope="session")
def request_for():
    return _request_for
