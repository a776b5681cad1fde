"""The access log: behind nginx (`python -m frontend`) nginx writes it, once per request, and
gunicorn's own is off (it cost the app about 0.2 ms of CPU per request); ACCESS_LOG=off stops it."""

from __future__ import annotations

import re
import time
from pathlib import Path

import requests
from helpers import IMAGES, MODELS, TEST_SERVER_ENV

from tools.server import start_frontend

CAT = (IMAGES / "cat.jpg").read_bytes()
LINE = '"POST /api/v1/classify HTTP/1.1" 200'


def classify_and_read_log(tmp_path: Path, env: dict[str, str]) -> str:
    server = start_frontend(tmp_path, MODELS, env)
    try:
        for _ in range(3):
            answer = requests.post(
                server.url + "/api/v1/classify", files={"image": CAT}, timeout=60
            )
            assert answer.status_code == 200
        time.sleep(2)  # nginx writes its buffer at least once a second
        deadline = time.monotonic() + 60
        while "ready: " not in server.log.read_text(errors="replace"):
            assert time.monotonic() < deadline, "no ready line"
            time.sleep(0.2)
        return server.log.read_text(errors="replace")
    finally:
        server.stop()


def test_each_request_is_logged_once_by_nginx(tmp_path: Path) -> None:
    log = classify_and_read_log(tmp_path, {})
    assert log.count(LINE) == 3, log[-2000:]
    # Where the page is, once the default model answers; none of TensorFlow's start-up log (the
    # upload lane's spare worker imports it) and no access-log line of that check.
    ready = [line for line in log.splitlines() if line.startswith("ready: ")]
    assert len(ready) == 1 and re.fullmatch(r"ready: http://127\.0\.0\.1:\d+/", ready[0])
    assert log.count('"GET /readyz') == 0
    assert "Control socket" not in log  # gunicornc's, turned off in gunicorn.conf.py
    for noise in ("oneDNN", "cuda", "absl", "cpu_feature_guard", "TensorFlow binary"):
        assert noise not in log, noise


def test_access_log_off(tmp_path: Path) -> None:
    log = classify_and_read_log(tmp_path, {"ACCESS_LOG": "off", **TEST_SERVER_ENV})
    assert LINE not in log
