"""Starting the plain Flask peer (bench/peer_app.py) as a person would: gunicorn's sync workers,
one per core, on a free loopback port, with gunicorn's defaults."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tools.server import ROOT, Server, free_port, wait_until_up


def start_peer(folder: Path, model: Path, labels: Path) -> Server:
    port = free_port()
    log = folder / f"peer-{port}.log"
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "gunicorn"),
            "--config",  # not the project's gunicorn.conf.py, which gunicorn reads by default
            "/dev/null",
            "--workers",
            str(os.cpu_count() or 1),
            "--bind",
            f"127.0.0.1:{port}",
            "bench.peer_app:app",
        ],
        cwd=ROOT,
        env={**os.environ, "MODEL": str(model), "LABELS": str(labels)},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    server = Server(f"http://127.0.0.1:{port}", process, log)
    # up once a worker answers (a GET of the POST-only route: 405)
    wait_until_up(server.url + "/api/v1/classify", process, accept_status=True)
    return server
