"""How the frontend reaches workers. `pool` (default): warm workers that keep models loaded;
`process`: a fresh local process per request; `tcp`: the worker service (docker-compose).
Each takes a Request and returns probability rows and, for describe frames, the model's
description, or raises the ServiceError that stopped it."""

from __future__ import annotations

import os
from typing import Any, Protocol

from frontend.pool import PoolSettings, WorkerPool
from protocol import Request, WorkerTimeout, WorkerUnavailable, decode_answer, encode_request
from worker.launcher import LaunchSettings, run_frame
from worker.limits import Limits
from worker.tcp import send_frame

Answer = tuple[list[list[float]], dict[str, Any] | None]


class Transport(Protocol):
    def exchange(self, request: Request) -> Answer: ...

    def close(self) -> None: ...


class ProcessTransport:
    def __init__(self, settings: LaunchSettings) -> None:
        self.settings = settings

    def exchange(self, request: Request) -> Answer:
        return decode_answer(run_frame(encode_request(request), self.settings))

    def close(self) -> None:
        pass


class TcpTransport:
    def __init__(self, address: tuple[str, int], timeout: float) -> None:
        self.address = address
        self.timeout = timeout

    def exchange(self, request: Request) -> Answer:
        try:
            answer = send_frame(self.address, encode_request(request), self.timeout)
        except TimeoutError:
            raise WorkerTimeout(f"the worker service took longer than {self.timeout:g} s") from None
        except OSError as exc:
            host, port = self.address
            raise WorkerUnavailable(f"cannot reach the worker at {host}:{port}: {exc}") from None
        return decode_answer(answer)

    def close(self) -> None:
        pass


def launch_settings(config: dict[str, Any]) -> LaunchSettings:
    limits = Limits(memory_mb=config["WORKER_MEMORY_MB"], cpu_seconds=config["WORKER_CPU_SECONDS"])
    return LaunchSettings(config["WORKER_TIMEOUT"], config["WORKER_THREADS"], limits)


def pool_size(config: dict[str, Any]) -> int:
    """POOL_SIZE, or the cores shared out among gunicorn's processes (at least one each), so
    that gunicorn's processes do not multiply the pool past the cores."""
    if config["POOL_SIZE"]:
        return config["POOL_SIZE"]
    web_processes = int(os.environ.get("WEB_CONCURRENCY", "1") or 1)
    return max(1, (os.cpu_count() or 1) // max(1, web_processes))


def make_transport(config: dict[str, Any]) -> Transport:
    kind = config["WORKER_TRANSPORT"]
    if kind == "pool":
        settings = PoolSettings(
            size=pool_size(config),
            launch=launch_settings(config),
            cache_mb=config["WORKER_CACHE_MB"],
            queue_limit=config["POOL_QUEUE_LIMIT"],
            timeout=config["WORKER_TIMEOUT"],
        )
        return WorkerPool(settings)
    if kind == "process":
        return ProcessTransport(launch_settings(config))
    if kind == "tcp":
        host, _, port = config["WORKER_ADDRESS"].rpartition(":")
        return TcpTransport((host, int(port)), config["WORKER_TIMEOUT"])
    raise ValueError(f"WORKER_TRANSPORT must be 'pool', 'process' or 'tcp', not {kind!r}")
