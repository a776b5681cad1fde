"""The supervisor's settings, read from environment variables with sane defaults (the README
lists them), and what they build: the sandbox, the launch settings of a worker and the local
warm pool. The frontend and the worker service (`python -m supervisor`) read the same names."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from supervisor.batching import Batcher
from supervisor.launcher import LaunchSettings
from supervisor.pool import PoolSettings, WorkerPool
from supervisor.sandbox import Sandbox, find_bwrap
from supervisor.seccomp import SeccompUnavailable
from supervisor.seccomp import program as seccomp_program
from supervisor.transport import Transport
from worker.limits import Limits

logger = logging.getLogger("gunicorn.error")

# name: (default, type); the environment variable has the same name.
SETTINGS: dict[str, tuple[Any, type]] = {
    "POOL_SIZE": (0, int),  # warm workers per process; 0: cores / WEB_CONCURRENCY
    "POOL_QUEUE_LIMIT": (64, int),  # requests waiting for a worker (per lane) before 503
    # Uploaded and registered models run in warm workers of their own (supervisor/model_lane.py).
    "UPLOAD_POOL_SIZE": (1, int),  # their frames running at once
    "UPLOAD_TIMEOUT": (30.0, float),  # wall-clock seconds per frame of an uploaded model
    "UPLOAD_MEMORY_MB": (2048, int),  # their warm workers' own memory, spares included
    "UPLOAD_SPARES": (1, int),  # spare workers per runtime, started with it imported
    "QUARANTINE_SECONDS": (600.0, float),  # how long a model that broke its worker is refused
    "WORKER_CACHE_MB": (1024, int),  # loaded-model budget of each warm worker
    # Dynamic batching for models that take any batch size; 1: off (see README, Performance).
    "BATCH_MAX_SIZE": (1, int),
    "BATCH_WAIT_MS": (2.0, float),  # how long the first request of a batch waits for others
    "WORKER_TIMEOUT": (60.0, float),  # wall-clock seconds per request
    "WORKER_MEMORY_MB": (4096, int),  # address-space limit of each worker process
    "WORKER_CPU_SECONDS": (120, int),
    "WORKER_THREADS": (1, int),
    # The sandbox around workers: "bwrap" (bubblewrap at BWRAP_PATH) or "none".
    "WORKER_SANDBOX": ("bwrap", str),
    "BWRAP_PATH": ("bwrap", str),
    "OP_ALLOWLIST": (True, bool),  # refuse models using operations outside worker/allowlist.py
    # Without a sandbox, models other than the default are refused unless this is set.
    "ALLOW_UNSANDBOXED_MODELS": (False, bool),
}


def parse_flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no setting: {raw!r} (use 1 or 0)")


def from_environment(
    settings: Mapping[str, tuple[Any, type]] = SETTINGS,
    environ: Mapping[str, str] = os.environ,
) -> dict[str, Any]:
    config = {}
    for name, (default, kind) in settings.items():
        raw = environ.get(name)
        parse = parse_flag if kind is bool else kind
        config[name] = default if raw in (None, "") else parse(raw)
    return config


def sandbox(config: Mapping[str, Any]) -> Sandbox | None:
    """The sandbox the settings ask for, checked by starting a process in it; None when asked
    for none, or (with a warning) when bwrap is missing or fails."""
    kind = config["WORKER_SANDBOX"]
    if kind == "none":
        return None
    if kind != "bwrap":
        raise ValueError(f"WORKER_SANDBOX must be 'bwrap' or 'none', not {kind!r}")
    bwrap = find_bwrap(config["BWRAP_PATH"])
    if bwrap is None:
        problem = f"bubblewrap ({config['BWRAP_PATH']}) is not installed"
    else:
        try:
            seccomp_program()
            filtered = True
        except SeccompUnavailable as exc:
            logger.warning("sandboxes run without their seccomp filter: %s", exc)
            filtered = False
        problem = Sandbox(bwrap, seccomp=filtered).check()
        if problem is None:
            return Sandbox(bwrap, seccomp=filtered)
        shared_proc = Sandbox(bwrap, proc="host", seccomp=filtered)
        if "proc" in problem and shared_proc.check() is None:
            logger.warning(
                "a fresh /proc cannot be mounted here (%s): the sandbox shares this "
                "container's /proc read-only",
                problem,
            )
            return shared_proc
    logger.warning(
        "the sandbox does not work (%s): workers run without it and only the default model is "
        "served (ALLOW_UNSANDBOXED_MODELS=1 overrides)",
        problem,
    )
    return None


def launch_settings(config: Mapping[str, Any]) -> LaunchSettings:
    limits = Limits(memory_mb=config["WORKER_MEMORY_MB"], cpu_seconds=config["WORKER_CPU_SECONDS"])
    return LaunchSettings(
        config["WORKER_TIMEOUT"],
        config["WORKER_THREADS"],
        limits,
        sandbox=sandbox(config),
        check_ops=config["OP_ALLOWLIST"],
    )


def pool_size(config: Mapping[str, Any]) -> int:
    """POOL_SIZE, or the cores shared out among gunicorn's processes (at least one each), so
    that gunicorn's processes do not multiply the pool past the cores."""
    if config["POOL_SIZE"]:
        return config["POOL_SIZE"]
    web_processes = int(os.environ.get("WEB_CONCURRENCY", "1") or 1)
    return max(1, (os.cpu_count() or 1) // max(1, web_processes))


def local_pool(config: Mapping[str, Any]) -> Transport:
    """Warm workers on this machine, with dynamic batching in front when it is on."""
    settings = PoolSettings(
        size=pool_size(config),
        launch=launch_settings(config),
        cache_mb=config["WORKER_CACHE_MB"],
        queue_limit=config["POOL_QUEUE_LIMIT"],
        timeout=config["WORKER_TIMEOUT"],
        upload_size=config["UPLOAD_POOL_SIZE"],
        upload_timeout=config["UPLOAD_TIMEOUT"],
        upload_memory_mb=config["UPLOAD_MEMORY_MB"],
        upload_spares=config["UPLOAD_SPARES"],
        quarantine_seconds=config["QUARANTINE_SECONDS"],
    )
    pool = WorkerPool(settings)
    if config["BATCH_MAX_SIZE"] > 1:
        return Batcher(pool, config["BATCH_MAX_SIZE"], config["BATCH_WAIT_MS"] / 1000)
    return pool
