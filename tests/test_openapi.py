"""/openapi.json describes every API route, and schemathesis, driving the live server from it
with generated requests (bounded), never gets a 5xx."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import requests
from helpers import Server

from frontend import create_app

UNDOCUMENTED = {"/", "/metrics", "/openapi.json", "/static/<path:filename>"}


def test_every_route_is_described(server: Server) -> None:
    document = requests.get(server.url + "/openapi.json", timeout=10).json()
    assert document["openapi"].startswith("3.")
    routes: dict[str, set[str]] = {}
    for rule in create_app({"WORKER_TRANSPORT": "process"}).url_map.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        if rule.rule not in UNDOCUMENTED:
            routes.setdefault(path, set()).update(rule.methods - {"HEAD", "OPTIONS"})
    described = {
        path: {method.upper() for method in operations if method != "parameters"}
        for path, operations in document["paths"].items()
    }
    assert described == routes


def test_schemathesis_finds_no_server_error(server: Server, tmp_path: Path) -> None:
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "st"),
            "run",
            f"{server.url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "12",
            "--seed",
            "20261125",
            "--workers",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "passed" in result.stdout.lower()
