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

import requests
from conftest import IMAGES, MODELS, start_gunicorn

from tools.server import start_frontend

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


def test_normal_clients_are_answered_beside_200_slow_connections(tmp_path: Path) -> None:
    server = start_frontend(tmp_path, MODELS)
    try:
        assert normal_answers(server.url, 1, 60) == [200]  # warm
        with slow_connections(server.url, 200):
            time.sleep(1)  # every slow connection has started trickling
            assert normal_answers(server.url, 14, 10) == [200] * 14
    finally:
        server.stop()


def test_without_the_proxy_eight_slow_connections_starve_gunicorn(tmp_path: Path) -> None:
    server = start_gunicorn(tmp_path, {"GUNICORN_THREADS": "8", "WEB_CONCURRENCY": "1"})
    try:
        assert normal_answers(server.url, 1, 60) == [200]
        with slow_connections(server.url, 8):
            time.sleep(1)
            assert normal_answers(server.url, 2, 3) == ["ReadTimeout", "ReadTimeout"]
    finally:
        server.stop()
