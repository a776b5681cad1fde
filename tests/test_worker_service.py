"""The worker service as compose starts it (`python -m supervisor serve`, a real warm pool of
sandboxed workers), tried as someone else on its network would: without the secret nothing
runs; with it, headers that declare huge frames cost memory only as their bytes arrive."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import msgpack
import pytest
from helpers import DEFAULT_MODEL, ROOT

from protocol import RequestHeader, link
from protocol.frame import MAGIC, PREAMBLE, VERSION
from tools.server import WorkerService, start_worker_service, tree_rss_mib


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerService]:
    started = start_worker_service(tmp_path_factory.mktemp("worker-service"), DEFAULT_MODEL)
    yield started
    started.stop()


def _check(service: WorkerService, secret_file: str) -> tuple[int, dict]:
    """`python -m supervisor check`, compose's health check, with the given secret file."""
    env = {**os.environ, "WORKER_SECRET_FILE": secret_file}
    command = ["check", "--address", service.address, "--model", str(DEFAULT_MODEL)]
    result = subprocess.run(
        [sys.executable, "-m", "supervisor", *command],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return result.returncode, json.loads(result.stdout)


def test_the_secret_holder_runs_the_model_and_nobody_else_does(service, tmp_path) -> None:
    assert _check(service, str(service.secret_file)) == (0, {"status": "healthy", "classes": 1001})
    wrong = tmp_path / "guess"
    wrong.write_text("0123456789abcdef0123456789abcdef")
    status, answer = _check(service, str(wrong))
    assert status == 1 and "refused this frontend's secret" in answer["error"]


def test_a_frame_sent_without_the_handshake_is_refused(service) -> None:
    host, port = service.address.split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        assert sock.recv(link.CHALLENGE_BYTES).startswith(link.GREETING)
        sock.sendall(MAGIC + bytes(link.PROOF_BYTES - len(MAGIC)))  # a frame's first bytes
        assert sock.recv(16) == link.REFUSED
        assert sock.recv(16) == b""  # closed


def _authenticated(service: WorkerService) -> socket.socket:
    host, port = service.address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    secret = link.parse_secret(service.secret_file.read_bytes())
    sock.sendall(link.proof(secret, sock.recv(link.CHALLENGE_BYTES)))
    assert sock.recv(1) == link.ACCEPTED
    return sock


def test_headers_declaring_huge_frames_cost_only_what_arrives(service) -> None:
    """40 connections that each send a 48 MB frame's header and nothing more once took the
    service from 48 to 1969 MB; now each holds about a megabyte until pixels come."""
    header = RequestHeader(height=4000, width=4000, model_length=0).to_wire()
    encoded = msgpack.packb(header)
    head = PREAMBLE.pack(MAGIC, VERSION, len(encoded)) + encoded
    before = tree_rss_mib(service.process.pid, without_workers=True)
    connections = [_authenticated(service) for _ in range(40)]
    try:
        for sock in connections:
            sock.sendall(head)
        time.sleep(1.0)  # every handler has read its header
        grown = tree_rss_mib(service.process.pid, without_workers=True) - before
    finally:
        for sock in connections:
            sock.close()
    assert grown < 200, f"the service grew by {grown:.0f} MiB for 40 headers"


def test_the_service_will_not_start_without_a_secret(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "WORKER_SECRET_FILE"}
    result = subprocess.run(
        [sys.executable, "-m", "supervisor", "serve", "--listen", "127.0.0.1:0"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "WORKER_SECRET_FILE" in result.stderr
