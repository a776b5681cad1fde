"""How the frontend reaches workers. `pool` (default): warm workers that keep models loaded;
`process`: a fresh local process per request; `tcp`: the worker service (docker-compose).
Each takes a Request and returns probability rows and, for describe frames, the model's
description, or raises the ServiceError that stopped it."""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

from frontend.batching import Batcher
from frontend.pool import PoolSettings, WorkerPool
from protocol import Request, WorkerTimeout, WorkerUnavailable, decode_answer, encode_request
from worker.launcher import LaunchSettings, run_frame
from worker.limits import Limits
from worker.sandbox import Sandbox, find_bwrap
from worker.tcp import send_frame

logger = logging.getLogger("gunicorn.error")
Answer = tuple[list[list[float]], dict[str, Any] | None]


class Transport(Protocol):
    sandboxed: bool  # whether models run inside the sandbox (worker/sandbox.py)

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        """`batchable`: the model takes any batch size, so the request may share a frame with
        others; only the Batcher acts on it."""
        ...

    def preload(self, request: Request) -> None:
        """Load the model of `request` wherever models stay loaded (the pool's warm-up)."""
        ...

    def close(self) -> None: ...


class ProcessTransport:
    def __init__(self, settings: LaunchSettings) -> None:
        self.settings = settings
        self.sandboxed = settings.sandbox is not None

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        return decode_answer(run_frame(encode_request(request), self.settings))

    def preload(self, request: Request) -> None:
        pass  # nothing stays loaded between requests

    def close(self) -> None:
        pass


class TcpTransport:
    sandboxed = True  # the worker service sandboxes its workers (`--sandbox`, on by default)

    def __init__(self, address: tuple[str, int], timeout: float) -> None:
        self.address = address
        self.timeout = timeout

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        try:
            answer = send_frame(self.address, encode_request(request), self.timeout)
        except TimeoutError:
            raise WorkerTimeout(f"the worker service took longer than {self.timeout:g} s") from None
        except OSError as exc:
            host, port = self.address
            raise WorkerUnavailable(f"cannot reach the worker at {host}:{port}: {exc}") from None
        return decode_answer(answer)

    def preload(self, request: Request) -> None:
        pass  # nothing stays loaded between requests

    def close(self) -> None:
        pass


def sandbox(config: dict[str, Any]) -> Sandbox | None:
    """The sandbox the settings ask for, or None (asked for none, or bwrap is missing)."""
    kind = config["WORKER_SANDBOX"]
    if kind == "none":
        return None
    if kind != "bwrap":
        raise ValueError(f"WORKER_SANDBOX must be 'bwrap' or 'none', not {kind!r}")
    bwrap = find_bwrap(config["BWRAP_PATH"])
    if bwrap is None:
        logger.warning(
            "bubblewrap (%s) is not installed: workers run without the sandbox and only the "
            "default model is served (ALLOW_UNSANDBOXED_MODELS=1 overrides)",
            config["BWRAP_PATH"],
        )
        return None
    return Sandbox(bwrap)


def launch_settings(config: dict[str, Any]) -> LaunchSettings:
    limits = Limits(memory_mb=config["WORKER_MEMORY_MB"], cpu_seconds=config["WORKER_CPU_SECONDS"])
    return LaunchSettings(
        config["WORKER_TIMEOUT"],
        config["WORKER_THREADS"],
        limits,
        sandbox=sandbox(config),
        check_ops=config["OP_ALLOWLIST"],
    )


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
        pool = WorkerPool(settings)
        if config["BATCH_MAX_SIZE"] > 1:
            return Batcher(pool, config["BATCH_MAX_SIZE"], config["BATCH_WAIT_MS"] / 1000)
        return pool
    if kind == "process":
        return ProcessTransport(launch_settings(config))
    if kind == "tcp":
        host, _, port = config["WORKER_ADDRESS"].rpartition(":")
        return TcpTransport((host, int(port)), config["WORKER_TIMEOUT"])
    raise ValueError(f"WORKER_TRANSPORT must be 'pool', 'process' or 'tcp', not {kind!r}")
