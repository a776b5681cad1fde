"""Many images per call against one call per image, on the same server: 32 photos (224 px
JPEGs) in one POST /api/v1/classify with `images` parts, against the same 32 sent one per call
one after another, from the same Python client. The server's one-per-call throughput at
concurrency 16 (ab) comes from the sweep of bench/run.py."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

from client.multipart import encode_multipart

IMAGES_PER_CALL = 32


def _post(url: str, body: bytes, content_type: str) -> dict:
    request = urllib.request.Request(url, body, {"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.load(response)


def many_against_single(url: str, image: Path, rounds: int) -> dict[str, float]:
    """Images per second each way, best of `rounds` (a noisy neighbour slows a round, it never
    speeds one up)."""
    data = image.read_bytes()
    many = encode_multipart({}, [("images", f"{i}.jpg", data) for i in range(IMAGES_PER_CALL)])
    single = encode_multipart({}, [("image", "0.jpg", data)])
    endpoint = url + "/api/v1/classify"
    _post(endpoint, *many)  # warm
    best_many = best_single = 0.0
    for _ in range(rounds):
        started = time.perf_counter()
        results = _post(endpoint, *many)["results"]
        assert len(results) == IMAGES_PER_CALL and all("predictions" in r for r in results)
        best_many = max(best_many, IMAGES_PER_CALL / (time.perf_counter() - started))
        started = time.perf_counter()
        for _ in range(IMAGES_PER_CALL):
            _post(endpoint, *single)
        best_single = max(best_single, IMAGES_PER_CALL / (time.perf_counter() - started))
    return {
        "images_per_call": IMAGES_PER_CALL,
        "one_call_ips": round(best_many, 1),
        "single_calls_ips": round(best_single, 1),
        "ratio": round(best_many / best_single, 2),
    }
