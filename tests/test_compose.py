"""docker-compose.yml: the file is valid, and the frontend with the TCP transport works against a
worker started with exactly the command the compose file gives (no Docker engine here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import yaml
from conftest import IMAGES, ROOT, Server, start_gunicorn

from tools.server import free_port

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_config_is_valid() -> None:
    result = subprocess.run(
        [shutil.which("docker-compose") or "docker-compose", "-f", "docker-compose.yml", "config"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert set(yaml.safe_load(result.stdout)["services"]) == {"models", "worker", "frontend"}


def worker_command(port: int) -> list[str]:
    command = [part.replace("9000", str(port)) for part in COMPOSE["services"]["worker"]["command"]]
    assert command[0] == "mobilenet-worker"  # the console script the image installs
    return [str(Path(sys.executable).parent / command[0]), *command[1:]]


@pytest.fixture(scope="module")
def tcp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    worker = subprocess.Popen(worker_command(port), cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert "listening" in worker.stdout.readline()
    frontend_env = dict(COMPOSE["services"]["frontend"]["environment"])
    frontend_env.update(
        WORKER_ADDRESS=f"127.0.0.1:{port}",
        MODEL_DIR=os.environ.get("MODEL_DIR", str(ROOT / "models")),
    )
    frontend_env.pop("PORT")
    server = start_gunicorn(tmp_path_factory.mktemp("tcp"), frontend_env)
    yield server
    server.stop()
    worker.terminate()
    worker.wait(timeout=10)


def test_frontend_over_tcp_worker_classifies(tcp_stack: Server) -> None:
    response = requests.post(
        tcp_stack.url + "/api/v1/classify",
        files={"image": (IMAGES / "grace_hopper.jpg").read_bytes()},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "military uniform"
    assert requests.get(tcp_stack.url + "/readyz", timeout=60).status_code == 200


def test_tcp_worker_reports_model_errors(tcp_stack: Server) -> None:
    response = requests.post(
        tcp_stack.url + "/api/v1/classify",
        files={
            "image": (IMAGES / "cat.jpg").read_bytes(),
            "model_file": ("m.pb", b"\x01" * 500),
            "label_file": ("l.txt", b"a\nb\n"),
        },
        timeout=60,
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "model_invalid"


def test_unreachable_worker_is_503(tmp_path: Path) -> None:
    env = {"WORKER_TRANSPORT": "tcp", "WORKER_ADDRESS": f"127.0.0.1:{free_port()}"}
    server = start_gunicorn(tmp_path, env)
    try:
        response = requests.post(
            server.url + "/api/v1/classify",
            files={"image": (IMAGES / "cat.jpg").read_bytes()},
            timeout=30,
        )
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "worker_unavailable"
        assert requests.get(server.url + "/readyz", timeout=30).status_code == 503
    finally:
        server.stop()
