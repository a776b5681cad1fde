"""TCP service mode (docker-compose's `worker`): per connection, one frame in, one JSON answer
out. Each frame runs in a fresh limited worker process, exactly as the frontend's default
process transport does, so a hostile model cannot take the server down."""

from __future__ import annotations

import socket
import socketserver
import threading

from protocol import FrameError, encode_error, encode_request
from worker.framing import read_request
from worker.launcher import LaunchSettings, run_frame

READ_TIMEOUT_SECONDS = 30.0


class _FrameHandler(socketserver.BaseRequestHandler):
    server: WorkerServer

    def handle(self) -> None:
        with self.server.slots:
            self.request.settimeout(READ_TIMEOUT_SECONDS)
            try:
                frame = encode_request(read_request(self.request.recv))
            except FrameError as exc:
                self.request.sendall(encode_error(exc))
                return
            except (TimeoutError, ConnectionError):
                return
            self.request.sendall(run_frame(frame, self.server.settings))


class WorkerServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True

    def __init__(self, address: tuple[str, int], settings: LaunchSettings, concurrency: int):
        super().__init__(address, _FrameHandler)
        self.settings = settings
        self.slots = threading.BoundedSemaphore(concurrency)


def serve(host: str, port: int, settings: LaunchSettings, concurrency: int) -> None:
    with WorkerServer((host, port), settings, concurrency) as server:
        print(f"worker listening on {host}:{port}", flush=True)
        server.serve_forever()


def send_frame(address: tuple[str, int], frame: bytes, timeout: float) -> bytes:
    """Client side: the answer bytes for `frame` from a worker server at `address`."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(frame)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)
