"""Load from ApacheBench (`ab`, Debian apache2-utils): a C client that costs the shared cores
little, unlike a Python thread loop."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path

from client.multipart import encode_multipart


def multipart_body(folder: Path, fields: dict[str, str], image: Path) -> tuple[Path, str]:
    """A multipart/form-data body file with `image` as field `image`, and its content type."""
    data, content_type = encode_multipart(fields, [("image", image.name, image.read_bytes())])
    body = folder / f"body-{uuid.uuid4().hex}.bin"
    body.write_bytes(data)
    return body, content_type


def run_ab(url: str, body: Path, content_type: str, requests: int, concurrency: int) -> dict:
    """Throughput (requests/s) and mean, p50, p95 and p99 latency (ms) as ab measured them."""
    result = subprocess.run(
        [
            "ab",
            "-q",
            "-n",
            str(requests),
            "-c",
            str(concurrency),
            "-p",
            str(body),
            "-T",
            content_type,
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout

    def number(pattern: str) -> float:
        match = re.search(pattern, out)
        if not match:
            raise RuntimeError(f"ab output lacks {pattern!r}:\n{out}")
        return float(match.group(1))

    # ab counts answers whose length differs from the first as "Length" failures; ours vary
    # (timings in the JSON), so only connection, receive and exception failures count.
    kinds = re.search(r"\(Connect: (\d+), Receive: (\d+), Length: \d+, Exceptions: (\d+)\)", out)
    failed = sum(int(k) for k in kinds.groups()) if kinds else 0
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", out)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "throughput_rps": number(r"Requests per second:\s+([\d.]+)"),
        "mean_ms": number(r"Time per request:\s+([\d.]+) \[ms\] \(mean\)"),
        "p50_ms": number(r"\s50%\s+(\d+)"),
        "p95_ms": number(r"\s95%\s+(\d+)"),
        "p99_ms": number(r"\s99%\s+(\d+)"),
        "failed": failed + (int(non_2xx.group(1)) if non_2xx else 0),
    }
