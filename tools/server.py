"""Starting the real gunicorn server on a free loopback port, as `make run` does: shared by the
tests and the benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def tree_rss_mib(root: int) -> float:
    """Resident memory of `root` and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
        except OSError:
            continue
        pid, ppid = int(fields["Pid"]), int(fields["PPid"])
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, queue = 0, [root]
    while queue:
        pid = queue.pop()
        total += rss.get(pid, 0)
        queue.extend(children.get(pid, []))
    return total / 1024


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_frontend(tmp: Path, models: Path, env: dict[str, str] | None = None) -> Server:
    """The server as `make run` starts it: `python -m frontend`, gunicorn behind nginx."""
    port = free_port()
    log = tmp / f"frontend-{port}.log"
    full_env = {
        **os.environ,
        "MODEL_DIR": str(models),
        "BIND": f"127.0.0.1:{port}",
        "MODEL_STORE": str(tmp / f"store-{port}"),
        **(env or {}),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "frontend"],
        cwd=ROOT,
        env=full_env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    wait_until_up(server.url + "/healthz", process)
    return server


def start_gunicorn(
    tmp: Path, models: Path, env: dict[str, str] | None = None, wrapper: list[str] | None = None
) -> Server:
    """The real server on a free loopback port, with its own model store under `tmp` (unless
    `env` names one); `wrapper` is a command prefix that ends by exec'ing gunicorn."""
    port = free_port()
    log = tmp / f"gunicorn-{port}.log"
    full_env = {
        **os.environ,
        "MODEL_DIR": str(models),
        "BIND": f"127.0.0.1:{port}",
        "MODEL_STORE": str(tmp / f"store-{port}"),
        **(env or {}),
    }
    process = subprocess.Popen(
        [
            *(wrapper or []),
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "frontend:create_app()",
        ],
        cwd=ROOT,
        env=full_env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    wait_until_up(server.url + "/healthz", process)
    return server
