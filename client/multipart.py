"""multipart/form-data bodies, for the clients and the benchmarks (the server parses them with
the multipart package, frontend/request.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable


def encode_multipart(
    fields: dict[str, str], files: Iterable[tuple[str, str, bytes]]
) -> tuple[bytes, str]:
    """The body and its Content-Type; `files` are (field, filename, bytes)."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    for field, filename, data in files:
        safe_name = filename.replace('"', "_").replace("\r", "_").replace("\n", "_")
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{safe_name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
