"""Starting limited worker processes: `run_frame` runs one frame in a fresh one (the process
transport); `WarmWorker` is a long-lived one in serve mode (the pool). Importing this module
does not import TensorFlow."""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import BinaryIO

from protocol import (
    AnswerMismatch,
    AnswerReader,
    Request,
    WorkerCrashed,
    WorkerTimeout,
    WorkerUnavailable,
    decode_stream_answer,
    describe_exit,
    encode_error,
    encode_stamped_request,
    error_for_exit,
)
from supervisor.sandbox import PACKAGES_ROOT, Sandbox, clean_environment, sandbox_environment
from supervisor.transport import Answer
from worker.limits import Limits


@dataclass(frozen=True)
class LaunchSettings:
    timeout_seconds: float = 60.0
    threads: int = 1
    limits: Limits = field(default_factory=Limits)
    sandbox: Sandbox | None = None  # None: the worker runs with its rlimits only
    check_ops: bool = True  # the operation allowlist (worker/allowlist.py)
    solo_threads: int = 1  # a solo frame's: one that runs while no other does

    @contextmanager
    def launch(self, *extra: str) -> Iterator[tuple[list[str], tuple[int, ...]]]:
        """The worker's command line (inside the sandbox when there is one) and the file
        descriptors to pass it, open while in use."""
        command = self.worker_command(*extra)
        if self.sandbox is None:
            yield command, ()
            return
        with self.sandbox.launch(command, sandbox_environment()) as launched:
            yield launched

    def worker_command(self, *extra: str) -> list[str]:
        """The worker's own command line, outside any sandbox."""
        command = [
            sys.executable,
            "-m",
            "worker",
            "--threads",
            str(self.threads),
            "--solo-threads",
            str(self.solo_threads),
            "--memory-mb",
            str(self.limits.memory_mb),
            "--cpu-seconds",
            str(self.limits.cpu_seconds),
            *([] if self.check_ops else ["--allow-any-op"]),
            *extra,
        ]
        return command


def _clean_environment(workdir: str) -> dict[str, str]:
    """Outside a sandbox (and for bwrap itself): the worker's temporary folder as home."""
    return clean_environment(workdir, str(PACKAGES_ROOT))


def run_frame(frame: bytes, settings: LaunchSettings) -> bytes:
    """The worker's answer bytes. A worker that is killed, times out or crashes still yields a
    JSON error answer, so callers have a single path: `protocol.decode_answer`."""
    with (
        tempfile.TemporaryDirectory(prefix="mobilenet-worker-") as workdir,
        settings.launch() as (command, fds),
    ):
        process = subprocess.Popen(
            command,
            pass_fds=fds,
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


STDERR_TAIL_BYTES = 8192  # of each warm worker's stderr kept for the log when it dies


class StderrTail:
    """Drains a worker's stderr (so it never blocks on a full pipe) and keeps its last bytes."""

    def __init__(self, stream: BinaryIO) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self._thread.start()

    def _drain(self, stream: BinaryIO) -> None:
        with contextlib.suppress(OSError, ValueError):
            while chunk := stream.read1(4096):
                with self._lock:
                    self._chunks.append(chunk)
                    self._size += len(chunk)
                    while self._size - len(self._chunks[0]) >= STDERR_TAIL_BYTES:
                        self._size -= len(self._chunks.popleft())

    def text(self, wait: float = 1.0) -> str:
        """The tail, after waiting up to `wait` for a dead worker's last words."""
        self._thread.join(wait)
        with self._lock:
            data = b"".join(self._chunks)[-STDERR_TAIL_BYTES:]
        return data.decode(errors="replace").strip()


PIPE_BYTES = 1 << 20  # Linux's limit for an unprivileged process (/proc/sys/fs/pipe-max-size)


def _widen_pipe(fd: int) -> None:
    """A frame of a 224 px image (150 KB) in one write and one wake-up, not three 64 KiB ones."""
    with contextlib.suppress(OSError):  # the limit may be lower here: the default then
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


class WarmWorker:
    """A long-lived worker in serve mode: same limits, clean environment, own temporary folder
    and process group as a one-shot worker, but it keeps its models loaded between frames.

    Frames go in on its stdin; answers come back over a pipe of their own (`--answer-fd`), each
    echoing the frame's random request id; its stdout and stderr go to a bounded tail for the
    log. An answer that is not the frame's, bytes after an answer, or output while idle mean
    something in the worker is writing where it should not: the worker is killed."""

    def __init__(self, settings: LaunchSettings, cache_mb: int, runtime: str | None = None) -> None:
        """`runtime`: import it at start (protocol.formats.RUNTIMES), before any frame."""
        self.settings = settings
        self.runtime = runtime
        self._workdir = tempfile.TemporaryDirectory(prefix="mobilenet-worker-")
        self._answers, answer_end = os.pipe()
        self._ready, ready_end = os.pipe()
        serve = ["--serve", "--cache-mb", str(cache_mb), "--answer-fd", str(answer_end)]
        serve += ["--ready-fd", str(ready_end)]
        if runtime is not None:
            serve += ["--import-runtime", runtime]
        try:
            with settings.launch(*serve) as (command, fds):
                self.process = subprocess.Popen(
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                    pass_fds=(answer_end, ready_end, *fds),
                    cwd=self._workdir.name,
                    env=_clean_environment(self._workdir.name),
                    start_new_session=True,
                )
        finally:
            os.close(answer_end)
            os.close(ready_end)
        os.set_blocking(self.process.stdin.fileno(), False)
        for fd in (self.process.stdin.fileno(), self._answers):
            _widen_pipe(fd)
        self.stderr = StderrTail(self.process.stderr)
        self.models: set[str] = set()  # sha256 of the models it loaded and ran (the pool's book)
        self.ran: set[str] = set()  # sha256 of every model it was sent a frame for
        self.served = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def unsolicited_output(self) -> bool:
        """Whether it wrote to its answer channel while no frame was in hand."""
        return self._answers >= 0 and bool(select.select([self._answers], [], [], 0)[0])

    def wait_until_started(self) -> None:
        """Until the worker says it has started, its runtime imported (at most the settings'
        timeout): a frame's own timeout is for the frame, and a slow import under load must not
        count as the model's. WorkerUnavailable when it exits first or does not start in time
        (it is killed then)."""
        if self._ready < 0:
            return
        allowed = self.settings.timeout_seconds
        try:
            readable = select.select([self._ready], [], [], allowed)[0]
            said = os.read(self._ready, 1) if readable else None
        finally:
            os.close(self._ready)
            self._ready = -1
        if said:
            return
        if said == b"":  # it closed its end without a word: it is exiting
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(2)
            why = f"it exited as it started ({self.exit_description()})"
        else:
            why = f"it did not start within {allowed:g} s"
        self.kill()
        raise WorkerUnavailable(f"a worker could not be started: {why}")

    def exchange(self, request: Request, timeout: float) -> Answer:
        """The answer to `request`, once the worker has started. A worker that overruns
        `timeout` is killed, and so is one whose answer is not this frame's or is followed by
        more bytes."""
        self.wait_until_started()
        request_id, parts = encode_stamped_request(request)
        deadline = time.monotonic() + timeout
        try:
            if self.unsolicited_output():
                raise AnswerMismatch("the worker wrote an answer nobody asked for")
            self._write_all(parts, deadline)
            body = self._read_answer(deadline)
            if self.unsolicited_output():
                raise AnswerMismatch("the worker wrote more than its answer")
            answer = decode_stream_answer(body, request_id)
        except WorkerCrashed:  # AnswerMismatch among them
            self.kill()
            raise
        except TimeoutError:
            self.kill()
            raise WorkerTimeout(f"the worker took longer than {timeout:g} s") from None
        except (BrokenPipeError, EOFError, ConnectionError):
            # It is dying by itself: let it finish, so its exit status says why.
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(2)
            self.kill()
            raise WorkerCrashed(f"the worker died ({self.exit_description()})") from None
        finally:
            self.served += 1
        return answer

    def _write_all(self, parts: list[bytes | bytearray | memoryview], deadline: float) -> None:
        """The frame's parts, gathered by the kernel: a 224 px frame is one `writev` into the
        widened pipe, with no copy of its pixels in this process."""
        views, fd = [memoryview(part) for part in parts], self.process.stdin.fileno()
        while views:
            if not select.select([], [fd], [], max(0.0, deadline - time.monotonic()))[1]:
                raise TimeoutError
            try:
                written = os.writev(fd, views)
            except BlockingIOError:
                continue
            while views and written >= len(views[0]):
                written -= len(views.pop(0))
            if views:
                views[0] = views[0][written:]

    def _read_answer(self, deadline: float) -> bytes:
        reader = AnswerReader()
        while (body := reader.next_answer()) is None:
            if not select.select([self._answers], [], [], max(0.0, deadline - time.monotonic()))[0]:
                raise TimeoutError
            chunk = os.read(self._answers, max(reader.needed(), PIPE_BYTES))
            if not chunk:
                raise EOFError
            reader.receive_data(chunk)
        if reader.buffered:
            raise AnswerMismatch("the worker wrote more than its answer")
        return body

    def stderr_tail(self) -> str:
        return self.stderr.text()

    def exit_description(self) -> str:
        code = self.process.poll()
        return "still running" if code is None else describe_exit(code)

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
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        if self._answers >= 0:
            os.close(self._answers)
            self._answers = -1
        if self._ready >= 0:
            os.close(self._ready)
            self._ready = -1
        self._workdir.cleanup()
