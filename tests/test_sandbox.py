"""The sandbox around workers (bubblewrap): what a process inside it can and cannot reach, that
the pool's workers really run inside it, and that without it only the default model runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
from helpers import BIRD_LABELS, BIRD_MODEL, DEFAULT_MODEL, IMAGES, ROOT, start_gunicorn

from supervisor.sandbox import Sandbox, find_bwrap, sandbox_environment

PROBE = r"""
import json, os, socket, sys
secret, port = sys.argv[1], int(sys.argv[2])
found = {}
try:
    found["secret"] = open(secret).read()
except OSError as exc:
    found["secret"] = type(exc).__name__
try:
    socket.create_connection(("127.0.0.1", port), timeout=2).close()
    found["network"] = "connected"
except OSError as exc:
    found["network"] = type(exc).__name__
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
# a nested user namespace (CLONE_NEWUSER), and personality(2), which the filter denies
found["unshare_user"] = libc.unshare(0x10000000) == 0 or os.strerror(ctypes.get_errno())
found["personality"] = libc.personality(0xFFFFFFFF) >= 0 or os.strerror(ctypes.get_errno())
# AF_VSOCK (40) is not isolated by the network namespace; AF_ALG (38), a crypto interface
for family, name in ((40, "vsock"), (38, "alg")):
    try:
        socket.socket(family, socket.SOCK_STREAM if family == 40 else socket.SOCK_SEQPACKET).close()
        found[name] = "created"
    except OSError as exc:
        found[name] = exc.strerror
found["unix_pair"] = len(socket.socketpair()) == 2
if len(sys.argv) > 3:  # inside only: the same write outside would succeed and litter
    try:
        with open(os.path.join(sys.prefix, "written-by-sandbox"), "w") as handle:
            handle.write("x")
        found["write_python"] = "written"
    except OSError as exc:
        found["write_python"] = type(exc).__name__
    found["tmp"] = os.listdir("/tmp")
    found["env"] = sorted(os.environ)
    found["root"] = sorted(os.listdir("/"))
    found["app"] = sorted(os.listdir("/app"))
    found["home"] = os.path.exists("/root/.ssh") or os.path.exists("/home")
    project = sys.argv[3]
    found["project"] = sorted(os.listdir(project)) if os.path.isdir(project) else []
print(json.dumps(found))
"""


@pytest.fixture(scope="module")
def bwrap() -> str:
    found = find_bwrap()
    assert found, "bubblewrap is installed by `make test` (make debs)"
    return found


def test_inside_the_sandbox(bwrap: str, tmp_path: Path, monkeypatch) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-4711")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    threading.Thread(target=lambda: listener.accept(), daemon=True).start()
    port = listener.getsockname()[1]
    monkeypatch.setenv("ADMIN_TOKEN", "must-not-leak")
    probe = [sys.executable, "-c", PROBE, str(secret), str(port), str(ROOT)]
    with Sandbox(bwrap).launch(probe, sandbox_environment()) as (command, fds):
        result = subprocess.run(command, capture_output=True, text=True, timeout=60, pass_fds=fds)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    # The same probe outside reaches all of it, so each refusal below is the sandbox's doing.
    outside = subprocess.run(
        [sys.executable, "-c", PROBE, str(secret), str(port)], capture_output=True, text=True
    )
    assert json.loads(outside.stdout)["secret"] == "TOP-SECRET-4711"
    assert json.loads(outside.stdout)["network"] == "connected"
    assert found["secret"] == "FileNotFoundError"  # the host's /tmp is not there
    assert json.loads(outside.stdout)["personality"] is True  # allowed outside
    assert found["unshare_user"] == "Operation not permitted"
    assert found["personality"] == "Operation not permitted"
    assert found["vsock"] == found["alg"] == "Operation not permitted"
    for family in ("vsock", "alg"):  # outside: created, or not in this kernel; never EPERM
        assert json.loads(outside.stdout)[family] != "Operation not permitted"
    assert found["unix_pair"] is True
    assert found["network"] != "connected"
    assert found["write_python"] == "OSError"  # read-only file system
    assert found["tmp"] == []
    assert set(found["env"]) - {"PWD"} == set(sandbox_environment())  # bwrap sets PWD
    assert not found["home"]
    assert found["app"] == ["protocol", "worker"]
    assert "home" not in found["root"]
    # Nothing of the project: its virtualenv appears at /venv, wherever the checkout lives
    # (under /tmp too, which then stays empty above).
    assert found["project"] == []
    listener.close()


def test_pool_workers_run_inside_the_sandbox(tmp_path: Path, model_workers, wait_for) -> None:
    server = start_gunicorn(tmp_path, {"WEB_CONCURRENCY": "1", "POOL_SIZE": "1"})
    try:
        wait_for(lambda: len(model_workers(server, trusted_only=True)) == 1)
        (pid,) = model_workers(server, trusted_only=True)
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        names = sorted(e.split(b"=", 1)[0].decode() for e in environ if e)
        assert set(names) - {"PWD"} == set(sandbox_environment())
        answer = requests.post(
            server.url + "/api/v1/classify",
            files={"image": (IMAGES / "cat.jpg").read_bytes()},
            timeout=60,
        )
        assert answer.json()["predictions"][0]["label"] == "Egyptian cat"
    finally:
        server.stop()


def test_without_the_sandbox_only_the_default_model_runs(tmp_path: Path, register) -> None:
    missing = {"BWRAP_PATH": str(tmp_path / "no-such-bwrap"), "POOL_SIZE": "1"}
    server = start_gunicorn(tmp_path, missing)
    try:
        cat = (IMAGES / "cat.jpg").read_bytes()
        answer = requests.post(server.url + "/api/v1/classify", files={"image": cat}, timeout=60)
        assert answer.json()["predictions"][0]["label"] == "Egyptian cat"
        refused = register(server.url, BIRD_MODEL, BIRD_LABELS)
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "sandbox_unavailable"
        files = {
            "image_file": cat,
            "model_file": BIRD_MODEL.read_bytes(),
            "label_file": BIRD_LABELS.read_bytes(),
        }
        upload = requests.post(server.url + "/infer", files=files, timeout=60)
        assert upload.status_code == 403
        assert upload.json()["error"]["code"] == "sandbox_unavailable"
        assert "not installed" in server.log.read_text()
    finally:
        server.stop()
    (tmp_path / "allowed").mkdir()
    allowed = start_gunicorn(tmp_path / "allowed", {**missing, "ALLOW_UNSANDBOXED_MODELS": "1"})
    try:
        assert register(allowed.url, BIRD_MODEL, BIRD_LABELS).status_code == 201
    finally:
        allowed.stop()


def test_workers_outlive_the_thread_that_asked_for_them(bwrap: str, request_for, wait_for) -> None:
    """bwrap --die-with-parent ties a worker to the thread that forked it; the pool forks from
    one long-lived thread, so a warm-up thread that ends takes no worker with it."""

    from supervisor.launcher import LaunchSettings
    from supervisor.pool import PoolSettings, WorkerPool

    pool = WorkerPool(PoolSettings(size=2, launch=LaunchSettings(sandbox=Sandbox(bwrap))))
    try:
        warm = threading.Thread(target=pool.preload, args=(request_for(DEFAULT_MODEL, "cat.jpg"),))
        warm.start()
        warm.join()
        # Gone from the kernel too: a death signal it caused is queued by now.
        wait_for(lambda: not Path(f"/proc/self/task/{warm.native_id}").exists())
        assert pool.stats()["idle"] == 2 and pool.stats()["restarts"] == 0
        for _ in range(2):
            rows, _ = pool.exchange(request_for(DEFAULT_MODEL, "cat.jpg"))
            assert max(range(len(rows[0])), key=rows[0].__getitem__) == 286  # Egyptian cat
        assert pool.stats()["restarts"] == 0
    finally:
        pool.close()
