"""What "why this label" costs: POST /api/v1/explain (a 7x7 occlusion map, 50 classifications)
against POST /api/v1/classify of the same photo, one request at a time on the same server (the
default model, grace_hopper.jpg), median of each.

    .venv/bin/python -m bench.explain_cost [--rounds 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.run import cpu_model
from bench.setup import IMAGES, MODELS
from client.multipart import encode_multipart
from tools.server import start_gunicorn


def _median_ms(url: str, body: tuple[bytes, str], rounds: int) -> float:
    data, content_type = body
    times = []
    for _ in range(rounds + 1):  # the first warms
        started = time.perf_counter()
        request = urllib.request.Request(url, data, {"Content-Type": content_type})
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    photo = (IMAGES / "grace_hopper.jpg").read_bytes()
    body = encode_multipart({}, [("image", "grace_hopper.jpg", photo)])
    with tempfile.TemporaryDirectory() as tmp:
        server = start_gunicorn(Path(tmp), MODELS, {})
        try:
            time.sleep(3)  # the pool's warm-up
            explain = _median_ms(server.url + "/api/v1/explain", body, args.rounds)
            classify = _median_ms(server.url + "/api/v1/classify", body, args.rounds * 5)
        finally:
            server.stop()
    print(
        json.dumps(
            {
                "cpu": cpu_model(),
                "explain_ms": round(explain, 1),
                "classify_ms": round(classify, 1),
                "ratio": round(explain / classify, 1),
                "classifications_per_map": 50,
            }
        )
    )


if __name__ == "__main__":
    main()
