"""What the workers' settings (supervisor/settings.py) build: the sandbox, the launch settings
of a worker and the local warm pool. The frontend and the worker service (`python -m
supervisor`) build them the same way."""

from __future__ import annotations

import logging
import os

from supervisor.batching import Batcher
from supervisor.launcher import LaunchSettings
from supervisor.pool import PoolSettings, WorkerPool
from supervisor.sandbox import Sandbox, find_bwrap
from supervisor.seccomp import SeccompUnavailable
from supervisor.seccomp import program as seccomp_program
from supervisor.settings import WorkerSettings
from supervisor.transport import Transport
from worker.limits import Limits

logger = logging.getLogger("gunicorn.error")


def sandbox(settings: WorkerSettings) -> Sandbox | None:
    """The sandbox the settings ask for, checked by starting a process in it; None when asked
    for none, or (with a warning) when bwrap is missing or fails."""
    kind = settings.worker_sandbox
    if kind == "none":
        return None
    if kind != "bwrap":
        raise ValueError(f"WORKER_SANDBOX must be 'bwrap' or 'none', not {kind!r}")
    bwrap = find_bwrap(settings.bwrap_path)
    if bwrap is None:
        problem = f"bubblewrap ({settings.bwrap_path}) is not installed"
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


CORES = os.cpu_count() or 1


def launch_settings(settings: WorkerSettings) -> LaunchSettings:
    limits = Limits(memory_mb=settings.worker_memory_mb, cpu_seconds=settings.worker_cpu_seconds)
    return LaunchSettings(
        settings.worker_timeout,
        settings.worker_threads,
        limits,
        sandbox=sandbox(settings),
        check_ops=settings.op_allowlist,
        solo_threads=settings.solo_threads or min(pool_size(settings), CORES),
    )


def pool_size(settings: WorkerSettings) -> int:
    """POOL_SIZE, or the cores shared out among gunicorn's processes (at least one each), so
    that gunicorn's processes do not multiply the pool past the cores."""
    if settings.pool_size:
        return settings.pool_size
    web_processes = settings.web_concurrency or 1
    return max(1, CORES // web_processes)


def local_pool(settings: WorkerSettings) -> Transport:
    """Warm workers on this machine, with shared frames in front (supervisor/batching.py)."""
    pool = WorkerPool(
        PoolSettings(
            size=pool_size(settings),
            launch=launch_settings(settings),
            cache_mb=settings.worker_cache_mb,
            queue_limit=settings.pool_queue_limit,
            timeout=settings.worker_timeout,
            upload_size=settings.upload_pool_size,
            upload_timeout=settings.upload_timeout,
            upload_memory_mb=settings.upload_memory_mb,
            upload_spares=settings.upload_spares,
            quarantine_seconds=settings.quarantine_seconds,
        )
    )
    if settings.batch_max_size > 1 or settings.default_model_batch_size > 1:
        return Batcher(
            pool,
            settings.batch_max_size,
            settings.batch_wait_ms / 1000,
            settings.default_model_batch_size,
        )
    return pool
