"""Faults: SIGTERM lets requests in flight finish; a full disk or a read-only model store gives a
clear error and leaves no partial model, and the server keeps serving what it has."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
import requests
from helpers import BIRD_LABELS, BIRD_MODEL, FROZEN_MODEL, IMAGENET_LABELS, IMAGES, start_gunicorn

from frontend.dataplane import REGISTRATION_LOG

CAT = (IMAGES / "cat.jpg").read_bytes()


def classify_cat(url: str) -> str:
    answer = requests.post(url + "/api/v1/classify", files={"image": CAT}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"][0]["label"]


def in_mount_namespace(mount_script: str) -> list[str]:
    """A command prefix: a private mount namespace, `mount_script` run in it, then gunicorn."""
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f'{mount_script} && exec "$@"',
        "sh",
    ]


def test_sigterm_lets_a_request_in_flight_finish(
    tmp_path: Path, register, model_workers, wait_for
) -> None:
    # No spares: the worker that probes the model is then one started for it.
    server = start_gunicorn(tmp_path, {"POOL_SIZE": "1", "UPLOAD_SPARES": "0"})
    assert classify_cat(server.url) == "Egyptian cat"
    answers: list[requests.Response] = []
    # Registering the frozen graph takes seconds (its worker imports TensorFlow): SIGTERM once
    # the upload worker probing it is there.
    before = set(model_workers(server))
    sender = threading.Thread(
        target=lambda: answers.append(register(server.url, FROZEN_MODEL, IMAGENET_LABELS))
    )
    sender.start()
    wait_for(lambda: set(model_workers(server)) - before)
    server.process.send_signal(signal.SIGTERM)
    sender.join(60)
    assert answers and answers[0].status_code == 201, answers and answers[0].text
    assert server.process.wait(60) == 0
    assert "Handling signal: term" in server.log.read_text()


def test_full_disk_refuses_a_model_and_keeps_nothing_of_it(tmp_path: Path, register) -> None:
    store = tmp_path / "small-store"
    store.mkdir()
    # 6 MiB: room for the default model (3.5 MiB), not for the frozen graph (14 MiB).
    wrapper = in_mount_namespace(f"mount -t tmpfs -o size=6m tmpfs {store}")
    server = start_gunicorn(tmp_path, {"MODEL_STORE": str(store), "POOL_SIZE": "1"}, wrapper)
    try:
        assert classify_cat(server.url) == "Egyptian cat"  # registers the default model
        answer = register(server.url, FROZEN_MODEL, IMAGENET_LABELS)
        assert answer.status_code == 507, answer.text
        assert answer.json()["error"]["code"] == "store_unavailable"
        listed = requests.get(server.url + "/api/v1/models", timeout=10).json()["models"]
        assert [m["default"] for m in listed] == [True]
        # nothing partial inside the mount: read through the server's own namespace
        leftovers = [  # besides the registrations' log
            p
            for p in Path(f"/proc/{server.process.pid}/root{store}").iterdir()
            if p.name != REGISTRATION_LOG
        ]
        assert len(leftovers) == 1 and not leftovers[0].name.startswith(".partial")
        assert classify_cat(server.url) == "Egyptian cat"
    finally:
        server.stop()


def test_read_only_store_serves_what_it_has_and_refuses_new_models(
    tmp_path: Path, register
) -> None:
    store = tmp_path / "store"
    first = start_gunicorn(tmp_path, {"MODEL_STORE": str(store), "POOL_SIZE": "1"})
    try:
        assert classify_cat(first.url) == "Egyptian cat"
    finally:
        first.stop()
    before = sorted(p.name for p in store.iterdir())
    wrapper = in_mount_namespace(
        f"mount --bind {store} {store} && mount -o remount,bind,ro {store}"
    )
    server = start_gunicorn(tmp_path, {"MODEL_STORE": str(store), "POOL_SIZE": "1"}, wrapper)
    try:
        assert classify_cat(server.url) == "Egyptian cat"
        answer = register(server.url, BIRD_MODEL, BIRD_LABELS)
        assert answer.status_code == 507, answer.text
        assert answer.json()["error"]["code"] == "store_unavailable"
        assert "Read-only" in answer.json()["error"]["message"]
        assert classify_cat(server.url) == "Egyptian cat"
    finally:
        server.stop()
    assert sorted(p.name for p in store.iterdir()) == before


def test_an_app_that_fails_to_load_is_reported_plainly(tmp_path: Path) -> None:
    """A bad setting stops gunicorn with the reason, and its exit hooks do not fail on top."""
    with pytest.raises(RuntimeError, match="exited"):
        start_gunicorn(tmp_path, {"WORKER_TRANSPORT": "carrier-pigeon"})
    log = next(tmp_path.glob("gunicorn-*.log")).read_text()
    assert "WORKER_TRANSPORT must be 'pool', 'process' or 'tcp', not 'carrier-pigeon'" in log
    assert "AttributeError" not in log
