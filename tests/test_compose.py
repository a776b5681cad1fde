"""docker-compose.yml without Docker: the file is valid, and the frontend with the TCP transport
works against the worker service started with exactly the command the compose file gives.
`make compose-test` runs the stack itself (tests/test_compose_stack.py)."""

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
from helpers import BIRD_LABELS, BIRD_MODEL, IMAGES, MODELS, ROOT, Server, start_gunicorn

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
    services = yaml.safe_load(result.stdout)["services"]
    assert set(services) == {"models", "worker", "frontend"}
    # one image for every service, built once
    assert {s["image"] for s in services.values()} == {"mobilenet-service:latest"}


def compose_env(service: str, tmp: Path) -> dict[str, str]:
    """The compose file's environment for `service`, its secret file made under `tmp`."""
    secret = tmp / "worker-link-secret"
    if not secret.exists():
        secret.write_text("a secret both sides of this test read")
    env = dict(COMPOSE["services"][service]["environment"])
    assert env["WORKER_SECRET_FILE"] == "/link/secret"
    return {**env, "WORKER_SECRET_FILE": str(secret), "MODEL_DIR": str(MODELS)}


def worker_command(port: int) -> list[str]:
    """The compose file's worker command, with this machine's interpreter and models."""
    command = COMPOSE["services"]["worker"]["command"]
    assert command[0] == "python"
    return [
        sys.executable,
        *(part.replace("9000", str(port)).replace("/models", str(MODELS)) for part in command[1:]),
    ]


@pytest.fixture(scope="module")
def tcp_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port, tmp = free_port(), tmp_path_factory.mktemp("tcp")
    worker = subprocess.Popen(
        worker_command(port), cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, **compose_env("worker", tmp)},
    )  # fmt: skip
    assert "listening" in worker.stdout.readline()  # after the warm-up
    frontend_env = {**compose_env("frontend", tmp), "WORKER_ADDRESS": f"127.0.0.1:{port}"}
    server = start_gunicorn(tmp, frontend_env)
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
            # TFLite's file identifier, so it passes the frontend's sniff and reaches a worker
            "model_file": ("m.tflite", b"\x1c\x00\x00\x00TFL3" + b"\x01" * 500),
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


def test_without_a_sandbox_the_service_runs_only_its_default_model(tmp_path: Path) -> None:
    """As on a Swarm node, where bwrap cannot get the seccomp setting it needs."""
    port = free_port()
    worker = subprocess.Popen(
        worker_command(port),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **compose_env("worker", tmp_path),
             "BWRAP_PATH": str(tmp_path / "no-such-bwrap"), "POOL_SIZE": "1"},
    )  # fmt: skip
    try:
        assert "listening" in worker.stdout.readline()
        env = {**compose_env("frontend", tmp_path), "WORKER_ADDRESS": f"127.0.0.1:{port}"}
        server = start_gunicorn(tmp_path, env)
        try:
            cat = requests.post(
                server.url + "/api/v1/classify",
                files={"image": (IMAGES / "cat.jpg").read_bytes()},
                timeout=60,
            )
            assert cat.json()["predictions"][0]["label"] == "Egyptian cat"
            refused = requests.post(
                server.url + "/api/v1/models",
                files={"model": BIRD_MODEL.read_bytes(), "labels": BIRD_LABELS.read_bytes()},
                timeout=60,
            )
            assert refused.status_code == 403, refused.text
            assert refused.json()["error"]["code"] == "sandbox_unavailable"
        finally:
            server.stop()
    finally:
        worker.terminate()
        assert "not installed" in worker.communicate(timeout=30)[1]
