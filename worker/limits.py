"""Resource limits and the scheduling policy the worker applies to itself before touching a
model."""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import resource
import signal
import tempfile
from dataclasses import dataclass

PR_SET_DUMPABLE = 4  # linux/prctl.h


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 4096  # address space; TensorFlow maps far more than it touches
    cpu_seconds: int = 120  # per frame
    max_files: int = 64  # open file descriptors
    max_file_bytes: int = 0  # no file may be written (SavedModels unpack into memory)

    def apply(self, long_lived: bool = False) -> None:
        """A one-shot worker gets a hard CPU limit for its life; a long-lived one gets a soft
        limit that `renew_cpu_budget` moves forward before each frame (SIGXCPU ends it when a
        frame overruns; the hard limit stays open so the soft one can move). Both run under
        the normal scheduling policy."""
        normal_scheduling()
        memory = self.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        hard = resource.RLIM_INFINITY if long_lived else self.cpu_seconds + 5
        resource.setrlimit(resource.RLIMIT_CPU, (self.cpu_seconds, hard))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.max_files, self.max_files))
        resource.setrlimit(resource.RLIMIT_FSIZE, (self.max_file_bytes, self.max_file_bytes))
        # A write past the limit then fails with EFBIG (a model error) instead of killing us.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        # Python probes its temporary folder by writing a file, which that limit forbids;
        # TensorFlow's import asks for the folder, so name it instead of letting Python probe.
        tempfile.tempdir = os.environ.get("TMPDIR") or tempfile.tempdir or "/tmp"
        # On CPUs where TensorFlow enables oneDNN, large tensors come from its BFC allocator,
        # which on a failed allocation waits up to 10 s for memory to be freed, and retries:
        # a 4 TB Fill under RLIMIT_AS then hangs for 80 s instead of failing. The system
        # allocator fails at once (measured: no change in the frozen MobileNet's speed).
        os.environ["TF_ONEDNN_USE_SYSTEM_ALLOCATOR"] = "1"
        not_dumpable()

    def renew_cpu_budget(self) -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        used = math.ceil(usage.ru_utime + usage.ru_stime)
        resource.setrlimit(resource.RLIMIT_CPU, (used + self.cpu_seconds, resource.RLIM_INFINITY))


def not_dumpable() -> None:
    """No other process of the same user (a sandboxed model, where the sandbox shares a
    container's /proc) may read this one's memory, environment or open files."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def normal_scheduling() -> None:
    """The normal policy, whatever the parent's: the frontend may run under SCHED_BATCH
    (frontend/scheduling.py), which children inherit, and the model is what a request waits
    for."""
    if hasattr(os, "SCHED_OTHER"):
        with contextlib.suppress(OSError):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
