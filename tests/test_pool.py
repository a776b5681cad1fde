"""The warm pool on a real server: warm-up, reuse, overload, workers killed mid-request."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from helpers import IMAGES, Server, start_gunicorn

CAT = (IMAGES / "cat.jpg").read_bytes()


def bytes_read(pid: int) -> int:
    """What the process has read so far (its frames come in on stdin)."""
    fields = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return int(fields["rchar"])


def classify(server: Server, image: bytes = CAT) -> requests.Response:
    return requests.post(server.url + "/api/v1/classify", files={"image": image}, timeout=120)


def test_pool_size_follows_cores_and_gunicorn_processes(
    tmp_path: Path, model_workers, wait_for
) -> None:
    server = start_gunicorn(tmp_path, {"WEB_CONCURRENCY": "2"})
    try:
        # Warm-up starts every worker: cores (2) shared by 2 gunicorn processes = 1 each.
        wait_for(lambda: len(model_workers(server, trusted_only=True)) == 2)
        for _ in range(6):
            assert classify(server).json()["predictions"][0]["label"] == "Egyptian cat"
        assert len(model_workers(server, trusted_only=True)) == 2  # reused, not spawned per request
    finally:
        server.stop()


def test_kill_9_during_a_request_retries_and_replaces(
    tmp_path: Path, model_workers, wait_for
) -> None:
    server = start_gunicorn(tmp_path, {"WEB_CONCURRENCY": "1", "POOL_SIZE": "1"})
    try:
        wait_for(lambda: len(model_workers(server, trusted_only=True)) == 1)
        assert classify(server).status_code == 200
        (victim,) = model_workers(server, trusted_only=True)
        big = tmp_path / "big.jpg"
        from PIL import Image

        Image.open(IMAGES / "parrot.jpg").resize((4000, 3000)).save(big, quality=90)
        results: list[requests.Response] = []
        read_so_far = bytes_read(victim)
        sender = threading.Thread(target=lambda: results.append(classify(server, big.read_bytes())))
        sender.start()
        wait_for(lambda: bytes_read(victim) > read_so_far)  # its frame is arriving: in flight
        os.kill(victim, signal.SIGKILL)
        sender.join()
        answer = results[0]
        assert answer.status_code in (200, 502), answer.text
        if answer.status_code == 200:
            assert answer.json()["predictions"][0]["label"] == "macaw"
        else:
            assert answer.json()["error"]["code"] == "worker_crashed"
        wait_for(
            lambda: (
                model_workers(server, trusted_only=True)
                and victim not in model_workers(server, trusted_only=True)
            )
        )
        assert classify(server).json()["predictions"][0]["label"] == "Egyptian cat"
    finally:
        server.stop()


def test_overload_is_503_with_retry_after(tmp_path: Path, model_workers, wait_for) -> None:
    env = {
        "WEB_CONCURRENCY": "1",
        "POOL_SIZE": "1",
        "POOL_QUEUE_LIMIT": "1",
        "GUNICORN_THREADS": "16",
    }
    server = start_gunicorn(tmp_path, env)
    try:
        wait_for(lambda: len(model_workers(server, trusted_only=True)) == 1)
        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(lambda _: classify(server), range(12)))
        statuses = [a.status_code for a in answers]
        assert 200 in statuses and 503 in statuses, statuses
        assert set(statuses) <= {200, 503}
        refused = next(a for a in answers if a.status_code == 503)
        assert refused.headers["Retry-After"] == "1"
        assert refused.json()["error"]["code"] == "overloaded"
        assert all(
            a.json()["predictions"][0]["label"] == "Egyptian cat"
            for a in answers
            if a.status_code == 200
        )
    finally:
        server.stop()
