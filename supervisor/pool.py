"""The warm worker pool: long-lived sandboxed workers that keep models loaded.

Modelled on gunicorn's arbiter: workers are spawned (lazily, up to the pool size), watched
(every exchange has a deadline; a watcher thread checks the idle ones), timed out (killed),
reaped and replaced (warmed with the default model before they serve). A request goes to an
idle worker, preferring one that already holds its model, which is then named by sha256
instead of resent. Waiting requests are bounded: past the bound the caller gets Overloaded
(HTTP 503 with Retry-After). A worker that dies mid-request is replaced and the request is
retried once on another worker.

The worker class is a parameter (as gunicorn's `worker_class`): the real one is `WarmWorker`;
the pool's own tests give it fakes, so its overload, retry, reap and timeout rules are checked
without processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from protocol import (
    ModelUnknown,
    Overloaded,
    Request,
    ServiceError,
    WorkerCrashed,
    WorkerUnavailable,
    decode_stream_answer,
    encode_request,
)
from supervisor.launcher import LaunchSettings, WarmWorker
from supervisor.metrics import LATENCY, MODEL_CACHE, QUEUE_DEPTH, WORKER_RESTARTS
from supervisor.transport import Answer


class Worker(Protocol):
    """What the pool needs of a worker process (WarmWorker, or a test's fake)."""

    models: set[str]  # sha256 of the models it holds

    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...

    def exchange(self, frame: bytes, timeout: float) -> bytes: ...

    def kill(self) -> None: ...

    def stop(self, grace: float = 5.0) -> None: ...


WorkerClass = Callable[[LaunchSettings, int], Worker]


@dataclass(frozen=True)
class PoolSettings:
    size: int
    launch: LaunchSettings
    cache_mb: int = 1024
    queue_limit: int = 64  # requests waiting for a worker; more get Overloaded at once
    timeout: float = 60.0  # seconds per exchange, and the longest wait for a free worker
    watch_interval: float = 1.0  # seconds between checks for idle workers that died


def _by_reference(request: Request, sha256: str) -> Request:
    header = dataclasses.replace(request.header, model_length=0, model_sha256=sha256)
    return Request(header, b"", request.pixels)


class WorkerPool:
    def __init__(self, settings: PoolSettings, worker_class: WorkerClass = WarmWorker) -> None:
        self.settings = settings
        self._worker_class = worker_class
        self._changed = threading.Condition()
        self._idle: list[Worker] = []
        self._count = 0  # idle + busy + being spawned
        self._waiting = 0
        self._closed = False
        self._warm_request: Request | None = None  # run on every replacement before it serves
        self._watcher: threading.Thread | None = None
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pool-spawner")
        self.restarts = 0
        self.sandboxed = settings.launch.sandbox is not None

    # --- spawn, reap, replace --------------------------------------------------------------

    def _spawn(self) -> Worker:
        # Always from the one spawner thread: the sandbox kills a worker when the thread that
        # started it ends (bwrap's --die-with-parent is PR_SET_PDEATHSIG, which is per
        # thread), and the warm-up thread, for one, ends.
        return self._spawner.submit(
            self._worker_class, self.settings.launch, self.settings.cache_mb
        ).result()

    def _acquire(self, sha256: str) -> Worker:
        started = time.monotonic()
        try:
            return self._wait_for_worker(sha256, started + self.settings.timeout)
        finally:
            LATENCY.labels("queue").observe(time.monotonic() - started)

    def _wait_for_worker(self, sha256: str, deadline: float) -> Worker:
        with self._changed:
            if not self._idle and self._waiting >= self.settings.queue_limit:
                raise Overloaded(f"{self._waiting} requests are already waiting for a worker")
            self._waiting += 1
            QUEUE_DEPTH.inc()
            try:
                while not self._idle:
                    if self._closed:
                        raise WorkerUnavailable("the worker pool is shut down")
                    if self._count < self.settings.size:
                        self._count += 1
                        break  # spawn one below, outside the lock
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Overloaded(f"no worker was free within {self.settings.timeout:g} s")
                    self._changed.wait(remaining)
                else:
                    worker = next((w for w in self._idle if sha256 in w.models), self._idle[-1])
                    self._idle.remove(worker)
                    return worker
            finally:
                self._waiting -= 1
                QUEUE_DEPTH.dec()
        self._start_watcher()
        try:
            return self._spawn()
        except OSError as exc:
            with self._changed:
                self._count -= 1
                self._changed.notify()
            raise WorkerUnavailable(f"a worker could not be started: {exc}") from None

    def _release(self, worker: Worker) -> None:
        """Back to the idle list; a dead worker is reaped and its place freed for a new one."""
        if not worker.alive():
            self._reap(worker)
            return
        with self._changed:
            if self._closed:
                worker.stop()
                self._count -= 1
                return
            self._idle.append(worker)
            self._changed.notify()

    def _reap(self, worker: Worker) -> None:
        worker.kill()
        with self._changed:
            self._count -= 1
            self.restarts += 1
            WORKER_RESTARTS.inc()
            self._changed.notify()

    def _start_watcher(self) -> None:
        with self._changed:
            if self._watcher is not None or self._closed:
                return
            self._watcher = threading.Thread(target=self._watch, name="pool-watcher", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        """The arbiter's loop: reap idle workers that died and spawn warm replacements, so
        the pool is back at full size before the next request needs it."""
        while True:
            time.sleep(self.settings.watch_interval)
            with self._changed:
                if self._closed:
                    return
                dead = [worker for worker in self._idle if not worker.alive()]
                for worker in dead:
                    self._idle.remove(worker)
            for worker in dead:
                self._reap(worker)
            if dead:
                self._refill()

    def _refill(self) -> None:
        warm = self._warm_request
        if warm is None:
            return
        sha256 = warm.header.model_sha256 or hashlib.sha256(warm.model).hexdigest()
        while True:
            with self._changed:
                if self._closed or self._count >= self.settings.size:
                    return
                self._count += 1
            try:
                worker = self._spawn()
            except OSError:
                with self._changed:
                    self._count -= 1
                return  # the next request tries again and reports why
            # A worker that cannot warm up still serves; a dead one is reaped by _release.
            with contextlib.suppress(ServiceError):
                self._run_on(worker, warm, sha256)
            self._release(worker)

    # --- requests --------------------------------------------------------------------------

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        sha256 = request.header.model_sha256 or hashlib.sha256(request.model).hexdigest()
        for attempt in (1, 2):
            worker = self._acquire(sha256)
            try:
                return self._run_on(worker, request, sha256)
            except WorkerCrashed:
                if attempt == 2:
                    raise
            finally:
                self._release(worker)
        raise AssertionError("unreachable")

    def _run_on(self, worker: Worker, request: Request, sha256: str) -> Answer:
        timeout = self.settings.timeout
        if sha256 in worker.models:
            try:
                frame = encode_request(_by_reference(request, sha256))
                answer = decode_stream_answer(worker.exchange(frame, timeout))
                MODEL_CACHE.labels("hit").inc()
                return answer
            except ModelUnknown:  # evicted from the worker's cache since: send it in full
                worker.models.discard(sha256)
        MODEL_CACHE.labels("miss").inc()
        answer = decode_stream_answer(worker.exchange(encode_request(request), timeout))
        worker.models.add(sha256)  # only after it loaded and ran
        return answer

    def preload(self, request: Request) -> None:
        """Run `request` on every worker, starting them all: the pool's warm-up."""
        sha256 = request.header.model_sha256 or hashlib.sha256(request.model).hexdigest()
        self._warm_request = request
        self._start_watcher()
        held = [self._acquire("") for _ in range(self.settings.size)]
        try:
            for worker in held:
                if sha256 not in worker.models:
                    self._run_on(worker, request, sha256)
        finally:
            for worker in held:
                self._release(worker)

    def stats(self) -> dict[str, int]:
        with self._changed:
            return {
                "size": self.settings.size,
                "started": self._count,
                "idle": len(self._idle),
                "waiting": self._waiting,
                "restarts": self.restarts,
            }

    def close(self) -> None:
        """Stop idle workers now; busy ones stop when their request is done."""
        with self._changed:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._changed.notify_all()
        for worker in idle:
            worker.stop()
