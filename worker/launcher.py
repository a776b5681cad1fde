"""Run one frame in a fresh, limited worker process. Used by the frontend's process transport
and by the worker's TCP server. Importing this module does not import TensorFlow."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from protocol import ResourceExhausted, WorkerCrashed, WorkerTimeout, encode_error
from worker.limits import Limits

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LaunchSettings:
    timeout_seconds: float = 60.0
    threads: int = 1
    limits: Limits = field(default_factory=Limits)

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "worker",
            "--threads",
            str(self.threads),
            "--memory-mb",
            str(self.limits.memory_mb),
            "--cpu-seconds",
            str(self.limits.cpu_seconds),
        ]


def _clean_environment(workdir: str) -> dict[str, str]:
    """Only what Python and the runtimes need: no secrets, tokens or proxies from our own env."""
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "PYTHONPATH": str(PROJECT_ROOT),
        "PYTHONDONTWRITEBYTECODE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "OMP_NUM_THREADS": "1",
    }


def run_frame(frame: bytes, settings: LaunchSettings) -> bytes:
    """The worker's answer bytes. A worker that is killed, times out or crashes still yields a
    JSON error answer, so callers have a single path: `protocol.decode_answer`."""
    with tempfile.TemporaryDirectory(prefix="mobilenet-worker-") as workdir:
        process = subprocess.Popen(
            settings.command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env=_clean_environment(workdir),
            start_new_session=True,  # its own process group, so a timeout kills every child
        )
        try:
            stdout, stderr = process.communicate(frame, timeout=settings.timeout_seconds)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()
            return encode_error(
                WorkerTimeout(f"the worker took longer than {settings.timeout_seconds:g} s")
            )
        except BrokenPipeError:  # the worker gave up reading early; its answer says why
            stdout, stderr = process.communicate()
    if stdout.strip():
        return stdout
    code = process.returncode
    if code in (-signal.SIGXCPU, -signal.SIGKILL):
        return encode_error(ResourceExhausted(f"the worker exceeded its CPU limit (exit {code})"))
    detail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return encode_error(WorkerCrashed(f"the worker died with exit {code}: {detail[0][:300]}"))
