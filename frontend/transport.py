"""How the frontend reaches a worker: a fresh local process per request (`process`, default) or
the worker service over TCP (`tcp`, docker-compose). Both return the worker's answer bytes;
a worker that cannot be reached or answered in time becomes a ServiceError here."""

from __future__ import annotations

from typing import Any, Protocol

from protocol import WorkerTimeout, WorkerUnavailable
from worker.launcher import LaunchSettings, run_frame
from worker.limits import Limits
from worker.tcp import send_frame


class Transport(Protocol):
    def exchange(self, frame: bytes) -> bytes:
        """The worker's answer bytes for `frame` (decode with protocol.decode_*)."""
        ...


class ProcessTransport:
    def __init__(self, settings: LaunchSettings) -> None:
        self.settings = settings

    def exchange(self, frame: bytes) -> bytes:
        return run_frame(frame, self.settings)


class TcpTransport:
    def __init__(self, address: tuple[str, int], timeout: float) -> None:
        self.address = address
        self.timeout = timeout

    def exchange(self, frame: bytes) -> bytes:
        try:
            return send_frame(self.address, frame, self.timeout)
        except TimeoutError:
            raise WorkerTimeout(f"the worker service took longer than {self.timeout:g} s") from None
        except OSError as exc:
            host, port = self.address
            raise WorkerUnavailable(f"cannot reach the worker at {host}:{port}: {exc}") from None


def make_transport(config: dict[str, Any]) -> Transport:
    kind = config["WORKER_TRANSPORT"]
    if kind == "process":
        limits = Limits(
            memory_mb=config["WORKER_MEMORY_MB"], cpu_seconds=config["WORKER_CPU_SECONDS"]
        )
        return ProcessTransport(
            LaunchSettings(config["WORKER_TIMEOUT"], config["WORKER_THREADS"], limits)
        )
    if kind == "tcp":
        host, _, port = config["WORKER_ADDRESS"].rpartition(":")
        return TcpTransport((host, int(port)), config["WORKER_TIMEOUT"])
    raise ValueError(f"WORKER_TRANSPORT must be 'process' or 'tcp', not {kind!r}")


__all__ = ["ProcessTransport", "TcpTransport", "Transport", "make_transport"]
