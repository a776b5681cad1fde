"""Starting limited worker processes: `run_frame` runs one frame in a fresh one (the process
transport); `WarmWorker` is a long-lived one in serve mode (the pool). Importing this module
does not import TensorFlow."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

from protocol import (
    AnswerReader,
    WorkerCrashed,
    WorkerTimeout,
    encode_error,
    error_for_exit,
)
from supervisor.sandbox import PACKAGES_ROOT, Sandbox, clean_environment, sandbox_environment
from worker.limits import Limits


@dataclass(frozen=True)
class LaunchSettings:
    timeout_seconds: float = 60.0
    threads: int = 1
    limits: Limits = field(default_factory=Limits)
    sandbox: Sandbox | None = None  # None: the worker runs with its rlimits only
    check_ops: bool = True  # the operation allowlist (worker/allowlist.py)

    def command(self, *extra: str) -> list[str]:
        """The worker's command line, inside the sandbox when there is one."""
        command = [
            sys.executable,
            "-m",
            "worker",
            "--threads",
            str(self.threads),
            "--memory-mb",
            str(self.limits.memory_mb),
            "--cpu-seconds",
            str(self.limits.cpu_seconds),
            *([] if self.check_ops else ["--allow-any-op"]),
            *extra,
        ]
        if self.sandbox is None:
            return command
        return self.sandbox.wrap(command, sandbox_environment())


def _clean_environment(workdir: str) -> dict[str, str]:
    """Outside a sandbox (and for bwrap itself): the worker's temporary folder as home."""
    return clean_environment(workdir, str(PACKAGES_ROOT))


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
            env=_clean_environment(workdir),  # bwrap's own; the sandbox sets the worker's
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
    detail = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    return encode_error(error_for_exit(process.returncode, detail[0][:300]))


class WarmWorker:
    """A long-lived worker in serve mode: same limits, clean environment, own temporary folder
    and process group as a one-shot worker, but it keeps its models loaded between frames."""

    def __init__(self, settings: LaunchSettings, cache_mb: int) -> None:
        self.settings = settings
        self._workdir = tempfile.TemporaryDirectory(prefix="mobilenet-worker-")
        self.process = subprocess.Popen(
            settings.command("--serve", "--cache-mb", str(cache_mb)),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            cwd=self._workdir.name,
            env=_clean_environment(self._workdir.name),
            start_new_session=True,
        )
        os.set_blocking(self.process.stdin.fileno(), False)
        self.models: set[str] = set()  # sha256 of the models sent to it in full
        self.served = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def exchange(self, frame: bytes, timeout: float) -> bytes:
        """The answer body for `frame`. A worker that overruns `timeout` is killed."""
        deadline = time.monotonic() + timeout
        try:
            self._write_all(frame, deadline)
            body = self._read_answer(deadline)
        except WorkerCrashed:
            self.kill()
            raise
        except TimeoutError:
            self.kill()
            raise WorkerTimeout(f"the worker took longer than {timeout:g} s") from None
        except (BrokenPipeError, EOFError, ConnectionError):
            self.kill()
            raise WorkerCrashed(f"the worker died (exit {self.process.returncode})") from None
        self.served += 1
        return body

    def _write_all(self, data: bytes, deadline: float) -> None:
        view, fd = memoryview(data), self.process.stdin.fileno()
        while view:
            if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
                raise TimeoutError
            try:
                view = view[os.write(fd, view[: 1 << 20]) :]
            except BlockingIOError:
                continue

    def _read_answer(self, deadline: float) -> bytes:
        fd, reader = self.process.stdout.fileno(), AnswerReader()
        while (body := reader.next_answer()) is None:
            if not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError
            chunk = os.read(fd, reader.needed())
            if not chunk:
                raise EOFError
            reader.receive_data(chunk)
        return body

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self._close()

    def stop(self, grace: float = 5.0) -> None:
        """Close its input so it exits after the frame in hand; kill it after `grace`."""
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(grace)
        except subprocess.TimeoutExpired:
            self.kill()
        self._close()

    def _close(self) -> None:
        for stream in (self.process.stdin, self.process.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self._workdir.cleanup()
