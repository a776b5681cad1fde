"""Starting the plain Flask peer (bench/peer_app.py) as a person would: gunicorn's sync workers,
one per core, on a free loopback port, with gunicorn's defaults. The floor app
(bench/floor_app.py) is started the same way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools.server import ROOT, Server, free_port, wait_until_up


def start_plain_gunicorn(folder: Path, app: str, env: dict[str, str]) -> Server:
    """`app` ("module:name") behind gunicorn's defaults: sync workers, one per core."""
    port = free_port()
    log = folder / f"plain-{port}.log"
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--config",  # not the project's gunicorn.conf.py, which gunicorn reads by default
            "/dev/null",
            "--workers",
            str(os.cpu_count() or 1),
            "--bind",
            f"127.0.0.1:{port}",
            app,
        ],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    # up once a worker answers (the peer's POST-only route answers a GET with 405)
    wait_until_up(server.url + "/api/v1/classify", process, accept_status=True)
    return server


def start_peer(folder: Path, model: Path, labels: Path) -> Server:
    return start_plain_gunicorn(
        folder, "bench.peer_app:app", {"MODEL": str(model), "LABELS": str(labels)}
    )
