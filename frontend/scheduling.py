"""The frontend's CPU scheduling policy.

On a machine with as many busy threads as cores, every wake-up of a gunicorn thread or of nginx
preempts a model worker in the middle of its inference. Under `SCHED_BATCH` the kernel treats
the frontend's processes as CPU-bound and lets a running model worker finish its slice: fewer
preemptions of the model, fewer wake-ups of the frontend, at the cost of a little latency in
the frontend's own short steps (docs/performance.md has the measurements). The policy is
inherited by threads and children, so the model workers set the normal one back at start
(worker/limits.py)."""

from __future__ import annotations

import contextlib
import os


def use_batch_policy(enabled: bool) -> None:
    """Put the calling thread, and so the threads and processes it starts later, under
    `SCHED_BATCH`. Call it before starting any thread. Where the system has no such policy,
    nothing changes."""
    if enabled and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
