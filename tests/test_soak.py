"""A bounded soak (SOAK_SECONDS, default 12): concurrency 8 against the real server, a quarter of
the requests bad in assorted ways. Good requests always get the right answer (never a 5xx), bad
ones always a 4xx JSON error, and the resident memory of the server and its workers stays flat."""

from __future__ import annotations

import io
import itertools
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests
from helpers import IMAGES, start_gunicorn
from PIL import Image

from tools.server import tree_rss_mib, wait_until_idle

SECONDS = float(os.environ.get("SOAK_SECONDS", "12"))
CONCURRENCY = 8


def _png(size: tuple[int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", size).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


GOOD = [
    ((IMAGES / "cat.jpg").read_bytes(), "Egyptian cat"),
    ((IMAGES / "grace_hopper.jpg").read_bytes(), "military uniform"),
    ((IMAGES / "parrot.jpg").read_bytes(), "macaw"),
]
CAT = GOOD[0][0]
# name: (multipart files, form fields, expected status, expected error code). One client sends
# all of it, 8 at a time: an upload may also meet its cap of concurrent uploads (429).
ANY_CLIENTS_CAP = (429, "too_many_uploads")
BAD = {
    "empty": ({"image": b""}, {}, 400, "invalid_image"),
    "text": ({"image": b"hello " * 50}, {}, 400, "invalid_image"),
    "truncated": ({"image": CAT[: len(CAT) // 4]}, {}, 400, "invalid_image"),
    "bomb": ({"image": _png((12_000, 12_000))}, {}, 400, "invalid_image"),
    "top_k": ({"image": CAT}, {"top_k": "many"}, 400, "invalid_field"),
    "unknown model": ({"image": CAT}, {"model": "f" * 64}, 404, "model_not_found"),
    "garbage model": (
        {"image": CAT, "model_file": b"\x08\x01" * 300, "label_file": b"a\nb\n"},
        {},
        422,
        "model_format_unknown",
    ),
}
# Three good for every bad one: a quarter of the requests are bad.
PLAN = [("good", i % 3) for i in range(3 * len(BAD))] + [("bad", name) for name in BAD]


def test_soak(tmp_path: Path) -> None:
    server = start_gunicorn(tmp_path)
    wait_until_idle(server)  # the warm-up and the spares' imports are not what is measured
    url = server.url + "/api/v1/classify"
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    lock = threading.Lock()
    plan = itertools.cycle(PLAN)

    def one(kind: str, which) -> None:
        if kind == "good":
            image, label = GOOD[which]
            answer = requests.post(url, files={"image": image}, timeout=60)
            ok = answer.status_code == 200 and answer.json()["predictions"][0]["label"] == label
        else:
            files, data, status, code = BAD[which]
            answer = requests.post(url, files=files, data=data, timeout=60)
            got = (answer.status_code, answer.json()["error"]["code"])
            ok = got == (status, code) or ("model_file" in files and got == ANY_CLIENTS_CAP)
        with lock:
            outcomes[f"{kind} {answer.status_code}"] += 1
            if not ok:
                failures.append(f"{kind} {which}: {answer.status_code} {answer.text[:200]}")

    def run_for(seconds: float) -> None:
        deadline = time.monotonic() + seconds

        def loop() -> None:
            while time.monotonic() < deadline:
                with lock:
                    kind, which = next(plan)
                one(kind, which)

        with ThreadPoolExecutor(CONCURRENCY) as pool:
            for future in [pool.submit(loop) for _ in range(CONCURRENCY)]:
                future.result()

    try:
        run_for(SECONDS * 0.2)  # every kind of request has been seen: caches and imports done
        before = tree_rss_mib(server.process.pid)
        run_for(SECONDS * 0.8)
        after = tree_rss_mib(server.process.pid)
        healthy = requests.post(url, files={"image": CAT}, timeout=60)
    finally:
        server.stop()
    total = sum(outcomes.values())
    bad = sum(n for key, n in outcomes.items() if key.startswith("bad"))
    print(
        f"soak: {total} requests, {bad} bad, {dict(outcomes)}; RSS {before:.0f} → {after:.0f} MiB"
    )
    assert not failures, failures[:10]
    assert bad / total >= 0.2
    assert not any(key.startswith("good 5") for key in outcomes)
    assert abs(after / before - 1) <= 0.10, (before, after)
    assert healthy.status_code == 200
