"""`python -m frontend`: the frontend as `make run` and docker compose serve it, gunicorn behind
nginx (frontend/proxy.py) on BIND (default 0.0.0.0:$PORT, PORT 8080).

gunicorn listens on a Unix socket of its own (cheaper per request than loopback TCP for both)
and trusts one proxy hop for the client's address (TRUSTED_PROXY_HOPS=1); nginx takes the
public port. Both are children of this process,
which passes SIGTERM and SIGINT on to them and ends when either ends, stopping the other.
FRONT_PROXY=none serves gunicorn alone on BIND (then slow clients can hold its threads). The
access log (ACCESS_LOG) is written by nginx, or by gunicorn when it serves alone. Once the
default model answers through nginx, one line says where the page is: `ready: http://...`."""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from frontend.proxy import UPSTREAM_IDLE_SECONDS
from frontend.proxy import config as nginx_config
from frontend.scheduling import use_batch_policy
from frontend.settings import load

ROOT = Path(__file__).resolve().parent.parent


def _gunicorn(bind: str, extra_env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "-c",
            str(ROOT / "gunicorn.conf.py"),
            "frontend:create_app()",
        ],
        env={**os.environ, "BIND": bind, **extra_env},
        cwd=ROOT,
    )


def _wait_for_socket(path: Path, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"frontend: gunicorn exited with {process.returncode}")
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(1)
                sock.connect(str(path))
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"frontend: gunicorn did not listen on {path} within {seconds:g} s")


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(str(self._path))


def _ready(upstream: Path, port: int) -> bool:
    """/readyz answers 200 from gunicorn (the default model ran) and nginx takes connections
    (asked without a request, so that no line of ours is in the access log)."""
    try:
        connection = _UnixHTTPConnection(upstream)
        connection.request("GET", "/readyz")
        if connection.getresponse().status != 200:
            return False
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    except OSError:
        return False
    return True


def _announce_when_ready(
    bind: str, upstream: Path, nginx: subprocess.Popen, seconds: float = 300
) -> None:
    """One line once the page can be used: `ready: URL`."""
    host, _, port = bind.rpartition(":")
    host = host.strip("[]")
    shown = "localhost" if host in ("", "0.0.0.0", "::") else host
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and nginx.poll() is None:
        if _ready(upstream, int(port)) and nginx.poll() is None:
            print(f"ready: http://{shown}:{port}/", flush=True)
            return
        time.sleep(0.5)
    if nginx.poll() is None:
        print(f"frontend: not ready after {seconds:g} s (GET /readyz says why)", file=sys.stderr)


def _nginx_log_path(access_log: str) -> str:
    return "/dev/stdout" if access_log == "-" else access_log


def main() -> int:
    settings = load()
    use_batch_policy(settings.batch_scheduling)  # nginx's and gunicorn's, inherited
    bind, proxy = settings.listen, settings.front_proxy
    if proxy == "none":
        os.execv(
            str(Path(sys.executable).parent / "gunicorn"),
            ["gunicorn", "-c", str(ROOT / "gunicorn.conf.py"), "frontend:create_app()"],
        )
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if proxy != "nginx" or nginx is None:
        print(
            f"frontend: FRONT_PROXY={proxy!r} needs nginx (Debian: nginx), or FRONT_PROXY=none",
            file=sys.stderr,
        )
        return 1
    children: list[subprocess.Popen] = []

    def stop(signum: int, frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with tempfile.TemporaryDirectory(prefix="mobilenet-frontend-") as run_dir:
        conf, upstream = Path(run_dir) / "nginx.conf", Path(run_dir) / "gunicorn.sock"
        conf.write_text(
            nginx_config(
                bind,
                f"unix:{upstream}",
                Path(run_dir),
                settings.max_content_length,
                settings.worker_timeout + 60,
                _nginx_log_path(settings.access_log),
            )
        )
        app = _gunicorn(
            f"unix:{upstream}",
            {
                "TRUSTED_PROXY_HOPS": "1",
                "ACCESS_LOG": "off",
                # Longer than nginx keeps the connection: nginx closes idle ones, never gunicorn.
                "GUNICORN_KEEPALIVE": str(UPSTREAM_IDLE_SECONDS + 15),
            },
        )
        children.append(app)
        _wait_for_socket(upstream, app)
        children.append(subprocess.Popen([nginx, "-c", str(conf), "-p", run_dir]))
        announce = (bind, upstream, children[-1])
        threading.Thread(target=_announce_when_ready, args=announce, daemon=True).start()
        # Whichever ends first ends the other; nginx stops at once, gunicorn after its drain.
        while all(child.poll() is None for child in children):
            time.sleep(0.2)
        stop(signal.SIGTERM, None)
        codes = [child.wait() for child in children]
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main())
