"""Load from ApacheBench (`ab`, Debian apache2-utils): a C client that costs the shared cores
little, unlike a Python thread loop."""

from __future__ import annotations

import re
import subprocess
import uuid
from pathlib import Path


def multipart_body(folder: Path, fields: dict[str, str], image: Path) -> tuple[Path, str]:
    """A multipart/form-data body file with `image` as field `image`, and its content type."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{image.name}"'
        f"\r\nContent-Type: image/jpeg\r\n\r\n".encode()
        + image.read_bytes()
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    body = folder / f"body-{boundary}.bin"
    body.write_bytes(b"".join(parts))
    return body, f"multipart/form-data; boundary={boundary}"


def run_ab(url: str, body: Path, content_type: str, requests: int, concurrency: int) -> dict:
    """Throughput (requests/s) and p50/p95/p99 latency (ms) as ab measured them."""
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
        "p50_ms": number(r"\s50%\s+(\d+)"),
        "p95_ms": number(r"\s95%\s+(\d+)"),
        "p99_ms": number(r"\s99%\s+(\d+)"),
        "failed": failed + (int(non_2xx.group(1)) if non_2xx else 0),
    }
