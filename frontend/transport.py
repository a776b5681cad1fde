"""How the frontend reaches a worker: a fresh local process per request (`process`, default) or
the worker service over TCP (`tcp`, docker-compose). Both return probabilities or raise the
ServiceError the worker reported."""

from __future__ import annotations

from typing import Any, Protocol

from protocol import WorkerTimeout, WorkerUnavailable, decode_answer
from worker.launcher import LaunchSettings, run_frame
from worker.limits import Limits
from worker.tcp import send_frame


class Transport(Protocol):
    def run(self, frame: bytes) -> list[float]: ...


class ProcessTransport:
    def __init__(self, settings: LaunchSettings) -> None:
        self.settings = settings

    def run(self, frame: bytes) -> list[float]:
        return decode_answer(run_frame(frame, self.settings))


class TcpTransport:
    def __init__(self, address: tuple[str, int], timeout: float) -> None:
        self.address = address
        self.timeout = timeout

    def run(self, frame: bytes) -> list[float]:
        try:
            answer = send_frame(self.address, frame, self.timeout)
        except TimeoutError:
            raise WorkerTimeout(f"the worker service took longer than {self.timeout:g} s") from None
        except OSError as exc:
            host, port = self.address
            raise WorkerUnavailable(f"cannot reach the worker at {host}:{port}: {exc}") from None
        return decode_answer(answer)


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
