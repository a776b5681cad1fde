"""The frontend's CPU scheduling policy, how many memory arenas its threads share, and when
freed memory goes back to the system.

On a machine with as many busy threads as cores, every wake-up of a gunicorn thread or of nginx
preempts a model worker in the middle of its inference. Under `SCHED_BATCH` the kernel treats
the frontend's processes as CPU-bound and lets a running model worker finish its slice: fewer
preemptions of the model, fewer wake-ups of the frontend, at the cost of a little latency in
the frontend's own short steps (docs/performance.md has the measurements). The policy is
inherited by threads and children, so the model workers set the normal one back at start
(worker/limits.py)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8  # malloc.h
MIB = 1024 * 1024


def use_batch_policy(enabled: bool) -> None:
    """Put the calling thread, and so the threads and processes it starts later, under
    `SCHED_BATCH`. Call it before starting any thread. Where the system has no such policy,
    nothing changes."""
    if enabled and hasattr(os, "SCHED_BATCH"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def set_malloc_arenas(count: int) -> None:
    """At most `count` glibc malloc arenas in this process and the ones it forks later (arenas
    already made stay). Elsewhere than glibc, nothing changes."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or None).mallopt(M_ARENA_MAX, count)


def set_malloc_thresholds(mmap_bytes: int = 4 * MIB, trim_bytes: int = 4 * MIB) -> None:
    """Allocations of `mmap_bytes` or more get pages of their own, which go back to the system
    when freed, and a heap whose free top passes `trim_bytes` hands it back, in this process
    and the ones it forks later. Set, they stay: by default glibc raises both after a large
    block is freed (up to 32 and 64 MB), and a large image decoded after that is served from
    a thread's heap, whose free top malloc_trim does not hand back (it trims only the main
    heap's): a 23 MP decode's memory stayed. A free top kept up to 8 MB per heap let the
    process creep up over a long soak; up to the largest block a heap serves, it stays flat
    (docs/performance.md). Elsewhere than glibc, nothing changes."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        libc.mallopt(M_MMAP_THRESHOLD, mmap_bytes)
        libc.mallopt(M_TRIM_THRESHOLD, trim_bytes)
