"""`docker compose up` for real (`make compose-test`; `make test` leaves these out): the one image
built once, the stack up on a Docker engine, everything checked through the published port.

In order: the default model; the bird model registered through the frontend and classified by
id; throughput against `make run`'s server measured in the same run; a restart of the stack
keeps the registered model (the store is a named volume); with `--scale worker=3` frames spread
over the replicas; a worker container killed under load hangs no request. It ends with
`docker compose down -v` and checks that nothing of it is left."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from helpers import (
    BIRD_LABELS,
    BIRD_MODEL,
    IMAGES,
    MODELS,
    PROBABILITY_TOLERANCE,
    ROOT,
    expected_rows,
)
from stacks import classify, ready, replica_frames, report, wait_until

from bench.loadgen import multipart_body, run_ab
from tools import docker_engine
from tools.fetch_models import sha256_of
from tools.server import free_port, start_frontend

pytestmark = pytest.mark.compose

PROJECT = "mobilenet-compose-test"
LOAD = {"requests": 200, "concurrency": 8}


@dataclass
class Stack:
    url: str
    env: dict[str, str]

    def compose(self, *args: str, timeout: float = 600) -> str:
        result = subprocess.run(
            ["docker-compose", "-p", PROJECT, "-f", str(ROOT / "docker-compose.yml"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def containers(self, service: str) -> list[str]:
        return self.compose("ps", "-q", service).split()

    def up(self, *extra: str) -> None:
        self.compose("up", "-d", "--no-build", *extra)
        wait_until(lambda: ready(self.url) or self.models_failed(), 300, "the frontend's /readyz")
        assert not self.models_failed(), self.compose("logs", "--no-color", "models")

    def models_failed(self) -> bool:
        (models,) = self.compose("ps", "-a", "-q", "models").split()
        state = docker_engine.docker(
            "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", models,
            capture_output=True, text=True,
        ).stdout.split()  # fmt: skip
        return state[:1] == ["exited"] and state[1:] != ["0"]

    def healthy(self, service: str) -> int:
        """How many of the service's containers Docker reports healthy."""
        ids = self.containers(service)
        states = docker_engine.docker(
            "inspect", "--format", "{{.State.Health.Status}}", *ids, capture_output=True, text=True
        ).stdout.split()
        return states.count("healthy") if ids else 0

    def logs(self) -> str:
        return self.compose("logs", "--no-color", "--tail", "60")


@pytest.fixture(scope="module")
def stack(docker_engine_ready: None) -> Iterator[Stack]:
    port = free_port()
    env = {**os.environ, "PORT": str(port)}  # MODEL_MIRROR passes through when make sets it
    started = Stack(f"http://127.0.0.1:{port}", env)
    started.compose("down", "-v", "--remove-orphans")  # what a killed earlier run left
    try:
        started.up()
        yield started
    except BaseException:
        print(started.logs())
        raise
    finally:
        started.compose("down", "-v", "--remove-orphans")
        label = f"label=com.docker.compose.project={PROJECT}"
        left = docker_engine.docker(
            "ps", "-aq", "--filter", label, capture_output=True, text=True
        ).stdout.split()
        volumes = docker_engine.docker(
            "volume", "ls", "-q", "--filter", label, capture_output=True, text=True
        ).stdout.split()
        assert left == [] and volumes == [], (left, volumes)


@pytest.fixture(scope="module")
def bird_id(stack: Stack) -> str:
    response = requests.post(
        stack.url + "/api/v1/models",
        files={
            "model": (BIRD_MODEL.name, BIRD_MODEL.read_bytes()),
            "labels": ("labels.txt", BIRD_LABELS.read_bytes()),
        },
        data={"name": "birds"},
        timeout=120,
    )
    assert response.status_code == 201, response.text
    assert response.json()["sha256"] == sha256_of(BIRD_MODEL)
    return response.json()["id"]


def test_default_model_through_the_published_port(stack: Stack) -> None:
    (row,) = [r for r in expected_rows("imagenet") if r.image.name == "grace_hopper.jpg"]
    response = classify(stack.url, "grace_hopper.jpg")
    assert response.status_code == 200, response.text
    best = response.json()["predictions"][0]
    assert best["label"] == "military uniform"
    assert abs(best["probability"] - row.probability) <= PROBABILITY_TOLERANCE


PROCESSES = (
    "import os\n"
    "for pid in filter(str.isdigit, os.listdir('/proc')):\n"
    "    print(open(f'/proc/{pid}/cmdline', 'rb').read().replace(b'\\0', b' ').decode())\n"
)


def worker_processes(container: str) -> list[str]:
    return docker_engine.docker(
        "exec", container, "python", "-c", PROCESSES, capture_output=True, text=True
    ).stdout.splitlines()


def test_models_run_in_warm_workers_inside_the_sandbox(stack: Stack) -> None:
    (worker,) = stack.containers("worker")

    # the virtualenv is at /venv only inside the sandbox: these are the warm workers, the
    # trusted pool's two and the upload lane's spare per runtime (started in the background)
    def warm() -> list[str]:
        return [
            line
            for line in worker_processes(worker)
            if line.startswith("/venv/bin/python -m worker")
        ]

    wait_until(lambda: len(warm()) >= 4, 120, "the upload lane's spares")
    listing = worker_processes(worker)
    sandboxed = [line for line in listing if line.startswith("/usr/bin/bwrap ")]
    assert any(" -m worker " in line and " --serve " in line for line in sandboxed), listing
    workers = warm()
    assert len([w for w in workers if "--import-runtime" not in w]) == 2, workers
    assert len([w for w in workers if "--import-runtime tflite" in w]) == 1, workers
    assert len([w for w in workers if "--import-runtime tensorflow" in w]) == 1, workers
    logs = stack.compose("logs", "--no-color", "worker")
    assert "the sandbox shares this container's /proc read-only" in logs
    assert "the sandbox does not work" not in logs


STRANGER = (
    "import socket, sys\n"
    "sock = socket.create_connection(('worker', 9000), timeout=10)\n"
    "greeting = sock.recv(36)\n"
    "sock.sendall(b'MNSF' + bytes(28))\n"  # a frame's first bytes, where the proof should be
    "print(greeting[:4].decode(), sock.recv(16).hex(), sock.recv(16).hex())\n"
)


def test_the_worker_port_answers_only_the_secret_holder(stack: Stack) -> None:
    """Any container on the stack's network reaches the worker service's port: without the
    secret (which only the frontend and the workers mount) its frames are refused and the
    connection closed. The secret file is the services' user's alone."""
    (frontend,) = stack.containers("frontend")
    stranger = docker_engine.docker(
        "exec", "--user", "nobody", frontend, "python", "-c", STRANGER,
        capture_output=True, text=True,
    )  # fmt: skip
    assert stranger.stdout.split() == ["MNSL", "00"], stranger.stdout + stranger.stderr
    mode = docker_engine.docker(
        "exec", frontend, "stat", "-c", "%a %u", "/link/secret", capture_output=True, text=True
    )
    assert mode.stdout.split() == ["400", "10001"], mode.stdout + mode.stderr
    readable = docker_engine.docker(
        "exec", "--user", "nobody", frontend, "cat", "/link/secret",
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert readable.returncode != 0 and "Permission denied" in readable.stderr


def test_bird_model_registered_through_the_frontend(stack: Stack, bird_id: str) -> None:
    response = classify(stack.url, "parrot.jpg", bird_id)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "Ara macao (Scarlet Macaw)"


def test_throughput_against_make_run(
    stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    """Both measured here, one after the other, with the same load."""
    body, content_type = multipart_body(tmp_path, {}, IMAGES / "grace_hopper.jpg")
    compose = run_ab(stack.url + "/api/v1/classify", body, content_type, **LOAD)
    local = start_frontend(tmp_path, MODELS)  # as make run serves: gunicorn behind nginx
    try:
        wait_until(lambda: ready(local.url), 120, "make run's server")
        run_ab(local.url + "/api/v1/classify", body, content_type, 20, 2)  # warm, as compose is
        make_run = run_ab(local.url + "/api/v1/classify", body, content_type, **LOAD)
    finally:
        local.stop()
    assert compose["failed"] == 0 and make_run["failed"] == 0, (compose, make_run)
    ratio = compose["throughput_rps"] / make_run["throughput_rps"]
    report(
        capsys,
        f"compose: throughput at c={LOAD['concurrency']}: "
        f"compose {compose['throughput_rps']:.1f} req/s, "
        f"make run {make_run['throughput_rps']:.1f} req/s, ratio {ratio:.2f} "
        f"(p50 {compose['p50_ms']:.0f} against {make_run['p50_ms']:.0f} ms)",
    )
    assert ratio > 0


def test_a_restart_keeps_the_registered_model(stack: Stack, bird_id: str) -> None:
    stack.compose("down")  # not -v: the named volumes stay
    assert stack.containers("frontend") == []
    stack.up()
    described = requests.get(f"{stack.url}/api/v1/models/{bird_id}", timeout=30)
    assert described.status_code == 200 and described.json()["name"] == "birds"
    response = classify(stack.url, "parrot.jpg", bird_id)
    assert response.json()["predictions"][0]["label"] == "Ara macao (Scarlet Macaw)"


def test_scaled_workers_share_the_load(stack: Stack, capsys: pytest.CaptureFixture) -> None:
    stack.up("--scale", "worker=3")
    wait_until(lambda: stack.healthy("worker") == 3, 300, "three healthy workers")
    time.sleep(6)  # the frontend resolves the service's name again every 5 s
    before = replica_frames(stack.url)
    with ThreadPoolExecutor(max_workers=6) as pool:
        answers = list(pool.map(lambda _: classify(stack.url, "cat.jpg"), range(60)))
    assert [a.status_code for a in answers] == [200] * 60
    after = replica_frames(stack.url)
    spread = {r: after[r] - before.get(r, 0) for r in after if after[r] - before.get(r, 0)}
    report(capsys, f"compose: 60 requests over the replicas: {spread}")
    assert len(spread) == 3, spread
    assert min(spread.values()) >= 60 * 0.15, spread


def test_a_worker_killed_under_load_hangs_nothing(
    stack: Stack, capsys: pytest.CaptureFixture
) -> None:
    victim = stack.containers("worker")[0]
    results: list[tuple[int | str, float]] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        started = time.monotonic()
        try:
            status: int | str = classify(stack.url, "grace_hopper.jpg").status_code
        except requests.RequestException as exc:  # a hang ends here, at the 60 s timeout
            status = type(exc).__name__
        with lock:
            results.append((status, time.monotonic() - started))

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(one, i) for i in range(90)]
        wait_until(lambda: len(results) >= 20, 120, "the first requests")
        docker_engine.docker("kill", victim, capture_output=True)
        for future in futures:
            future.result()
    statuses = [status for status, _ in results]
    slowest = max(seconds for _, seconds in results)
    failed = [s for s in statuses if s != 200]
    report(
        capsys,
        f"compose: one of 3 workers killed under load: {statuses.count(200)} of "
        f"{len(results)} answered 200, others {failed}, slowest {slowest:.1f} s",
    )
    assert len(results) == 90
    assert slowest < 30, slowest
    # Frames in flight on the killed replica are retried on another: every request answered.
    assert failed == [], failed
