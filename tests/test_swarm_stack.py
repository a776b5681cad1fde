"""The same compose file deployed as a Docker Swarm stack on a single-node swarm (`make
compose-test`): `docker stack deploy -c docker-compose.yml -c compose/swarm.yml`, with two
worker tasks and a frontend per node, checked through the published port.

A stack cannot give a service the seccomp setting bubblewrap needs (Docker ignores security_opt
for services), so on a node whose engine keeps its default profile the worker service runs
without the sandbox and serves only its default model: uploads get 403, as `make run` without
bwrap does. The swarm is left as found: one initialized here is left again."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers import BIRD_LABELS, BIRD_MODEL, ROOT
from stacks import classify, ready, replica_frames, report, wait_until

from tools import docker_engine
from tools.server import free_port

pytestmark = pytest.mark.compose

STACK = "mobilenet-swarm-test"
LABEL = f"label=com.docker.stack.namespace={STACK}"


def docker(*args: str, **options) -> str:
    result = docker_engine.docker(*args, check=False, capture_output=True, text=True, **options)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def ours(kind: str) -> list[str]:
    listing = ["ps", "-aq"] if kind == "containers" else ["volume", "ls", "-q"]
    return docker(*listing, "--filter", LABEL).split()


@pytest.fixture(scope="module")
def swarm(docker_engine_ready: None) -> Iterator[str]:
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    if state != "active":
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    port = free_port()
    env = {**os.environ, "PORT": str(port)}  # MODEL_MIRROR passes through when make sets it
    files = ["-c", str(ROOT / "docker-compose.yml"), "-c", str(ROOT / "compose" / "swarm.yml")]
    url = f"http://127.0.0.1:{port}"
    try:
        docker("stack", "deploy", *files, STACK, env=env, cwd=ROOT)
        wait_until(lambda: ready(url), 300, "the stack's /readyz")
        yield url
    finally:
        subprocess.run([docker_engine.DOCKER, "stack", "rm", STACK], capture_output=True)
        wait_until(lambda: not ours("containers"), 120, "the stack's containers to go")
        for volume in ours("volumes"):
            docker("volume", "rm", volume)
        if state != "active":
            docker("swarm", "leave", "--force")
        assert not ours("containers") and not ours("volumes")


def test_the_stack_serves_the_default_model(swarm: str) -> None:
    response = classify(swarm, "grace_hopper.jpg")
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0]["label"] == "military uniform"


def test_frames_spread_over_the_worker_tasks(swarm: str, capsys: pytest.CaptureFixture) -> None:
    wait_until(
        lambda: docker("service", "ls", "--filter", f"name={STACK}_worker", "--format",
                       "{{.Replicas}}").strip() == "2/2",
        120, "two worker tasks",
    )  # fmt: skip
    time.sleep(6)  # the frontend resolves the service's name again every 5 s
    before = replica_frames(swarm)
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda _: classify(swarm, "cat.jpg"), range(30)))
    assert [a.status_code for a in answers] == [200] * 30
    after = replica_frames(swarm)
    spread = {r: after[r] - before.get(r, 0) for r in after if after[r] - before.get(r, 0)}
    report(capsys, f"swarm: 30 requests over the worker tasks: {spread}")
    assert len(spread) == 2 and min(spread.values()) >= 30 * 0.2, spread


def test_without_the_sandbox_uploads_are_refused(swarm: str) -> None:
    response = requests.post(
        swarm + "/api/v1/models",
        files={"model": BIRD_MODEL.read_bytes(), "labels": BIRD_LABELS.read_bytes()},
        timeout=60,
    )
    assert response.status_code == 403, response.text
    assert response.json()["error"]["code"] == "sandbox_unavailable"
    logs = docker_engine.docker(
        "service", "logs", f"{STACK}_worker", capture_output=True, text=True
    )
    assert "the sandbox does not work" in logs.stdout + logs.stderr
