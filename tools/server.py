"""Starting the real gunicorn server on a free loopback port, as `make run` does, and the worker
service as compose does: shared by the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
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


def wait_until_up(
    url: str, process: subprocess.Popen, seconds: float = 60, accept_status: bool = False
) -> None:
    """Until `url` answers 2xx (with `accept_status`, any HTTP status at all)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            if accept_status:
                return
            time.sleep(0.2)
        # TimeoutError: gunicorn listens before its process has loaded the app, which on a
        # fresh checkout compiles every module it imports first.
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {seconds} s")


def _is_model_worker(pid: int) -> bool:
    """A model worker, or the sandbox around one (bwrap)."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return Path(command[0].decode(errors="replace")).name == "bwrap" or (
        command[1:3] == [b"-m", b"worker"]
    )


def process_tree(root: int, without_workers: bool = False) -> list[int]:
    """`root` and all its descendants, from /proc; `without_workers`: not the model workers
    (nor what they started)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [root]
    while queue:
        pid = queue.pop()
        if without_workers and _is_model_worker(pid):
            continue
        found.append(pid)
        queue.extend(children.get(pid, []))
    return found


def tree_rss_mib(root: int, without_workers: bool = False) -> float:
    """Resident memory of `root` and all its descendants, from /proc; `without_workers`: the
    frontend's own (gunicorn and nginx), not the model workers'."""
    total = 0
    for pid in process_tree(root, without_workers):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def tree_cpu_seconds(root: int) -> dict[int, float]:
    """CPU time (user + system) used so far by `root` and each of its descendants, by pid."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in process_tree(root):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used[pid] = (int(fields[11]) + int(fields[12])) / tick
    return used


def cpu_between(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds the tree used between two `tree_cpu_seconds` readings (processes that began
    in between count from zero)."""
    return sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())


def wait_until_idle(server: Server, seconds: float = 60, busy: float = 0.1) -> None:
    """Until the server's processes use less than `busy` CPU seconds in a second: the workers'
    warm-up and the upload lane's spares (which import their runtime) are done, and measuring
    can start."""
    time.sleep(1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        before = tree_cpu_seconds(server.process.pid)
        time.sleep(1)
        if cpu_between(before, tree_cpu_seconds(server.process.pid)) < busy:
            return


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path
    stop_signal: signal.Signals = signal.SIGTERM
    stop_seconds: float = 30.0

    def stop(self) -> None:
        stop_process(self.process, self.stop_signal, self.stop_seconds)


def stop_process(
    process: subprocess.Popen, stop_signal: int = signal.SIGTERM, seconds: float = 30.0
) -> None:
    """`stop_signal`; SIGKILL to it and every process under it if it has not ended within
    `seconds`."""
    process.send_signal(stop_signal)
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        for pid in process_tree(process.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        process.wait()


def _environment(tmp: Path, models: Path, port: int, env: dict[str, str] | None) -> dict[str, str]:
    """A server's environment: this one's, its models, its port and a model store of its own."""
    return {
        **os.environ,
        "MODEL_DIR": str(models),
        "BIND": f"127.0.0.1:{port}",
        "MODEL_STORE": str(tmp / f"store-{port}"),
        **(env or {}),
    }


QUICK_STOP_SECONDS = 5.0


def _start(
    command: list[str],
    log: Path,
    env: dict[str, str],
    port: int,
    stop: tuple[signal.Signals, float] = (signal.SIGTERM, 30.0),
) -> Server:
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )
    server = Server(f"http://127.0.0.1:{port}", process, log, *stop)
    wait_until_up(server.url + "/healthz", process)
    return server


def start_frontend(tmp: Path, models: Path, env: dict[str, str] | None = None) -> Server:
    """The server as `make run` starts it: `python -m frontend`, gunicorn behind nginx."""
    port = free_port()
    return _start(
        [sys.executable, "-m", "frontend"],
        tmp / f"frontend-{port}.log",
        _environment(tmp, models, port, env),
        port,
    )


def start_gunicorn(
    tmp: Path, models: Path, env: dict[str, str] | None = None, wrapper: list[str] | None = None
) -> Server:
    """The real server on a free loopback port, with its own model store under `tmp` (unless
    `env` names one); `wrapper` is a command prefix that ends by exec'ing gunicorn."""
    port = free_port()
    command = [
        *(wrapper or []),
        str(Path(sys.executable).parent / "gunicorn"),
        "-c",
        str(ROOT / "gunicorn.conf.py"),
        "frontend:create_app()",
    ]
    # Stopped by gunicorn's quick shutdown: its graceful one keeps each kept-alive connection
    # open for up to 2 s (STOP_KEEPALIVE_LINGER) and has a test of its own (tests/test_faults.py).
    # A quick shutdown now and then never ends (gunicorn's process does not log that it exits):
    # after 5 s every process of the server is killed.
    log = tmp / f"gunicorn-{port}.log"
    env = _environment(tmp, models, port, env)
    return _start(command, log, env, port, (signal.SIGQUIT, QUICK_STOP_SECONDS))


@dataclass
class WorkerService:
    """`python -m supervisor serve` and what a frontend needs to reach it."""

    address: str
    secret_file: Path
    process: subprocess.Popen

    @property
    def frontend_env(self) -> dict[str, str]:
        return {
            "WORKER_TRANSPORT": "tcp",
            "WORKER_ADDRESS": self.address,
            "WORKER_SECRET_FILE": str(self.secret_file),
        }

    def stop(self) -> None:
        stop_process(self.process)


def start_worker_service(
    tmp: Path, warm: Path | None, env: dict[str, str] | None = None, seconds: float = 60
) -> WorkerService:
    """The worker service on a free loopback port, with a secret of its own, once it listens."""
    port = free_port()
    secret_file = tmp / f"worker-secret-{port}"
    secret_file.write_text(secrets.token_hex(32))
    secret_file.chmod(0o600)
    command = [sys.executable, "-m", "supervisor", "serve", "--listen", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        [*command, *(["--warm", str(warm)] if warm else [])],
        cwd=ROOT,
        env={**os.environ, "WORKER_SECRET_FILE": str(secret_file), **(env or {})},
        stdout=(tmp / f"worker-service-{port}.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"the worker service did not listen on port {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return WorkerService(f"127.0.0.1:{port}", secret_file, process)
        time.sleep(0.2)
