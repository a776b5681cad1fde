"""Slow clients cannot starve the service: with 200 connections open that send their headers or
their bodies a trickle at a time, normal clients are answered, because nginx (frontend/proxy.py,
what `make run` and compose serve) reads requests in its event loop and hands gunicorn only
complete ones. The same attack with 8 connections does starve gunicorn alone (8 threads): the
defence is what makes the difference."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import numpy as np
import pytest
import requests
import tritonclient.http as triton
from helpers import IMAGES, MODELS, TEST_SERVER_ENV, start_gunicorn
from tritonclient.utils import InferenceServerException

from frontend.proxy import UPSTREAM_IDLE_SECONDS
from tools.server import Server, start_frontend

CAT = (IMAGES / "cat.jpg").read_bytes()


@contextmanager
def slow_connections(url: str, count: int) -> Iterator[None]:
    """`count` connections, half sending headers and half a body, one byte a second."""
    host, port = url.removeprefix("http://").split(":")
    stop = threading.Event()
    sockets = []
    for i in range(count):
        sock = socket.create_connection((host, int(port)), timeout=5)
        start = b"POST /api/v1/classify HTTP/1.1\r\nHost: x\r\n"
        if i % 2:  # complete headers, then a body that never ends
            start += b"Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n" + CAT[:10]
        sock.sendall(start)
        sockets.append(sock)

    def trickle() -> None:
        while not stop.wait(1.0):
            for sock in sockets:
                with suppress(OSError):
                    sock.send(b"X")

    dribbler = threading.Thread(target=trickle, daemon=True)
    dribbler.start()
    try:
        yield
    finally:
        stop.set()
        dribbler.join()
        for sock in sockets:
            sock.close()


def normal_answers(url: str, count: int, timeout: float) -> list[int | str]:
    statuses: list[int | str] = []
    for _ in range(count):
        try:
            answer = requests.post(url + "/api/v1/classify", files={"image": CAT}, timeout=timeout)
            statuses.append(answer.status_code)
        except requests.RequestException as exc:
            statuses.append(type(exc).__name__)
    return statuses


@pytest.fixture(scope="module")
def frontend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server as `make run` starts it, with a body limit a test can pass."""
    server = start_frontend(
        tmp_path_factory.mktemp("frontend"),
        MODELS,
        {"MAX_CONTENT_LENGTH": str(BODY_LIMIT), **TEST_SERVER_ENV},
    )
    yield server
    server.stop()


BODY_LIMIT = 4_000_000


def test_normal_clients_are_answered_beside_200_slow_connections(frontend: Server) -> None:
    assert normal_answers(frontend.url, 1, 60) == [200]  # warm
    with slow_connections(frontend.url, 200):
        time.sleep(1)  # every slow connection has started trickling
        assert normal_answers(frontend.url, 14, 10) == [200] * 14


def test_nginx_refuses_a_big_body_with_each_apis_error_body(frontend: Server) -> None:
    """nginx's own 413, before gunicorn sees the body: the serving protocols' clients read
    {"error": message} (tritonclient prints it), the JSON API {"error": {code, message}}."""
    body = b"x" * (BODY_LIMIT + 1)
    for path in ("/v2/models/default/infer", "/v1/models/default:predict"):
        answer = requests.post(frontend.url + path, data=body, timeout=60)
        assert answer.status_code == 413 and answer.headers["Server"] == "nginx"
        assert answer.json() == {
            "error": f"the request is over {BODY_LIMIT} bytes",
            "code": "payload_too_large",
        }
    answer = requests.post(frontend.url + "/api/v1/classify", data=body, timeout=60)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "payload_too_large"
    with triton.InferenceServerClient(frontend.url.removeprefix("http://")) as client:
        too_big = triton.InferInput("input", [1, BODY_LIMIT], "UINT8")
        too_big.set_data_from_numpy(np.zeros((1, BODY_LIMIT), np.uint8))
        with pytest.raises(InferenceServerException, match=r"\[413\] the request is over"):
            client.infer("default", [too_big])


def test_without_the_proxy_eight_slow_connections_starve_gunicorn(tmp_path: Path) -> None:
    server = start_gunicorn(tmp_path, {"GUNICORN_THREADS": "8", "WEB_CONCURRENCY": "1"})
    try:
        assert normal_answers(server.url, 1, 60) == [200]
        with slow_connections(server.url, 8):
            time.sleep(1)
            assert normal_answers(server.url, 2, 3) == ["ReadTimeout", "ReadTimeout"]
    finally:
        server.stop()


def _child(root_pid: int, name: bytes) -> tuple[int, list[bytes]]:
    """The pid and command line of the child of `python -m frontend` that runs `name`."""
    for pid in Path(f"/proc/{root_pid}/task/{root_pid}/children").read_text().split():
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        if any(name in part for part in command[:2]):
            return int(pid), command
    raise AssertionError(f"no {name!r} under the frontend")


def test_gunicorn_keeps_idle_connections_longer_than_nginx(frontend: Server) -> None:
    """nginx keeps idle connections to gunicorn for UPSTREAM_IDLE_SECONDS; had gunicorn closed
    them first (its default: after 2 s), a POST nginx wrote into one as it closed was lost and
    its client got 503. nginx closes them first, and big uploads right after an idle spell pass."""
    gunicorn, _ = _child(frontend.process.pid, b"gunicorn")
    environ = Path(f"/proc/{gunicorn}/environ").read_bytes().split(b"\0")
    (keepalive,) = [e for e in environ if e.startswith(b"GUNICORN_KEEPALIVE=")]
    assert int(keepalive.split(b"=")[1]) > UPSTREAM_IDLE_SECONDS
    _, nginx = _child(frontend.process.pid, b"nginx")
    words = b" ".join(nginx).split()  # nginx's master rewrites its command line as one
    conf = Path(words[words.index(b"-c") + 1].decode()).read_text()
    assert f"keepalive_timeout {UPSTREAM_IDLE_SECONDS}s;" in conf
    images = [("images", (f"{i}.jpg", (IMAGES / "cat.jpg").read_bytes())) for i in range(32)]
    for idle in (1.9, 2.0, 2.1):  # around gunicorn's default keep-alive
        time.sleep(idle)
        response = requests.post(frontend.url + "/api/v1/classify", files=images, timeout=60)
        assert response.status_code == 200, response.text
