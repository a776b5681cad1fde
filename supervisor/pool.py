"""The warm worker pool: long-lived sandboxed workers that keep models loaded.

Modelled on gunicorn's arbiter: the pool alone spawns its workers, hands them out, watches them
(every exchange has a deadline; a watcher thread checks the idle ones), kills those past their
time, reaps the dead (logging why, with their stderr's tail) and replaces them, and drains them
on shutdown with a bounded wait.

Two lanes, so that no upload can take the default model's capacity:
- the trusted lane (`size` workers) runs only the models given to `trust` or `preload`, the
  service's default model; its workers are warmed with it before they serve, and a frame whose
  worker dies is retried once on another;
- the upload lane (supervisor/model_lane.py) runs every other model, each in warm workers of
  its own, within a memory budget, with spare workers started in advance.

A request goes to an idle worker of its lane, preferably one that already holds its model,
which is then named by sha256 instead of resent. Waiting requests are bounded: past the bound
the caller gets Overloaded (HTTP 503 with Retry-After).

The worker class is a parameter (as gunicorn's `worker_class`): the real one is `WarmWorker`;
the pool's own tests give it fakes, so its rules are checked without processes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field

from protocol import (
    Overloaded,
    Request,
    ServiceError,
    WorkerCrashed,
    WorkerUnavailable,
    model_sha256,
)
from supervisor import tracing
from supervisor.lanes import (
    LaneLimits,
    RunningFrames,
    Spawner,
    Worker,
    WorkerClass,
    log_reaped,
    logger,
    run_on,
    take_failed_idle,
)
from supervisor.launcher import LaunchSettings, WarmWorker
from supervisor.memory import MemoryMeasure, tree_memory
from supervisor.metrics import DEFAULT_QUEUE, STAGE_LATENCY
from supervisor.model_lane import ModelLane, ModelLaneSettings
from supervisor.transport import Answer


@dataclass(frozen=True)
class PoolSettings:
    size: int  # trusted lane: the default model's workers
    launch: LaunchSettings
    cache_mb: int = 1024
    queue_limit: int = 64  # requests waiting for a worker, per lane; more get Overloaded at once
    timeout: float = 60.0  # seconds per exchange, and the longest wait for a free worker
    upload_size: int = 1  # upload lane: frames of other models running at once
    upload_timeout: float = 30.0
    upload_memory_mb: int = 2048  # upload lane: its warm workers' own memory, spares included
    upload_spares: int = 1  # upload lane: spare workers per runtime, started in advance
    quarantine_seconds: float = 600.0  # how long a model that broke its worker is refused
    watch_interval: float = 1.0  # seconds between checks of the idle workers


@dataclass
class _TrustedLane:
    size: int
    timeout: float
    # On the pool's lock, signalled once per worker (or place) freed: one waiter wakes, where
    # a condition shared by all would wake every waiting thread for each request.
    freed: threading.Condition
    idle: list[Worker] = field(default_factory=list)
    busy: set[Worker] = field(default_factory=set)
    count: int = 0  # idle + busy + being spawned
    waiting: int = 0


class WorkerPool:
    def __init__(
        self,
        settings: PoolSettings,
        worker_class: WorkerClass = WarmWorker,
        measure: MemoryMeasure = tree_memory,
    ) -> None:
        """`measure`: the memory of workers by pid (supervisor/memory.py; tests fake it)."""
        self.settings = settings
        self._spawner = Spawner(worker_class, settings.launch, settings.cache_mb)
        self._changed = threading.Condition(threading.RLock())  # close() waits on it
        self._frames = RunningFrames(settings.launch.solo_threads > settings.launch.threads)
        self._trusted = _TrustedLane(
            settings.size, settings.timeout, threading.Condition(self._changed)
        )
        self._uploads = ModelLane(
            ModelLaneSettings(
                size=settings.upload_size,
                timeout=settings.upload_timeout,
                queue_limit=settings.queue_limit,
                memory_mb=settings.upload_memory_mb,
                spares=settings.upload_spares,
                quarantine_seconds=settings.quarantine_seconds,
            ),
            self._spawner,
            self._changed,
            self._frames,
            measure,
        )
        self._trusted_models: set[str] = set()
        self._closed = False
        self._warm_request: Request | None = None  # run on every trusted replacement first
        self._watcher: threading.Thread | None = None
        self.restarts = 0
        self.sandboxed = settings.launch.sandbox is not None

    # --- the trusted lane: spawn, hand out, release --------------------------------------------

    def _acquire(self) -> Worker:
        lane, started = self._trusted, time.monotonic()
        try:
            return self._wait_for_worker(lane, started + lane.timeout)
        finally:
            STAGE_LATENCY["queue"].observe(time.monotonic() - started)

    def _wait_for_worker(self, lane: _TrustedLane, deadline: float) -> Worker:
        with self._changed:
            if not lane.idle and lane.waiting >= self.settings.queue_limit:
                raise Overloaded(f"{lane.waiting} requests are already waiting for a worker")
            lane.waiting += 1
            queued = not lane.idle  # the gauge counts requests that wait, not every one
            if queued:
                DEFAULT_QUEUE.inc()
            try:
                while not lane.idle:
                    if self._closed:
                        raise WorkerUnavailable("the worker pool is shut down")
                    if lane.count < lane.size:
                        lane.count += 1
                        break  # spawn one below, outside the lock
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Overloaded(f"no worker was free within {lane.timeout:g} s")
                    lane.freed.wait(remaining)
                else:
                    worker = lane.idle.pop()
                    lane.busy.add(worker)
                    return worker
            finally:
                lane.waiting -= 1
                if queued:
                    DEFAULT_QUEUE.dec()
        self._start_watcher()
        try:
            worker = self._spawner.start()
        except OSError as exc:
            with self._changed:
                lane.count -= 1
                self._freed()
            raise WorkerUnavailable(f"a worker could not be started: {exc}") from None
        with self._changed:
            lane.busy.add(worker)
        return worker

    def _release(self, worker: Worker) -> None:
        """Back to the idle list; a dead worker is reaped and its place freed for a new one."""
        lane = self._trusted
        if not worker.alive():
            self._reap(worker, "died")
            return
        with self._changed:
            lane.busy.discard(worker)
            if not self._closed:
                lane.idle.append(worker)
                self._freed()
                return
            lane.count -= 1
            self._freed()
        worker.stop()

    def _freed(self) -> None:
        """A trusted worker or place came free (the lock held)."""
        self._trusted.freed.notify()
        if self._closed:
            self._changed.notify_all()  # close() waits for the busy ones

    def _reap(self, worker: Worker, why: str) -> None:
        log_reaped("trusted", worker, why)
        with self._changed:
            self._trusted.busy.discard(worker)
            self._trusted.count -= 1
            self.restarts += 1
            self._freed()

    # --- watching -----------------------------------------------------------------------------

    def _start_watcher(self) -> None:
        with self._changed:
            if self._watcher is not None or self._closed:
                return
            self._watcher = threading.Thread(target=self._watch, name="pool-watcher", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        """The arbiter's loop: reap idle workers that died or write when nobody asked, and spawn
        warm replacements, so the trusted lane is back at full size before the next request
        and the upload lane has its spares."""
        while True:
            time.sleep(self.settings.watch_interval)
            with self._changed:
                if self._closed:
                    return
                found = take_failed_idle(self._trusted.idle)
            for worker, why in found:
                self._reap(worker, why)
            if found:
                self._refill()
            if self._uploads.reap_idle():
                self._uploads.start_spares()

    def _refill(self) -> None:
        warm = self._warm_request
        if warm is None:
            return
        lane, sha256 = self._trusted, model_sha256(warm)
        while True:
            with self._changed:
                if self._closed or lane.count >= lane.size:
                    return
                lane.count += 1
            try:
                worker = self._spawner.start()
            except OSError:
                with self._changed:
                    lane.count -= 1
                return  # the next request tries again and reports why
            with self._changed:
                lane.busy.add(worker)
            # A worker that cannot warm up still serves; a dead one is reaped by _release.
            with contextlib.suppress(ServiceError):
                run_on(worker, warm, sha256, lane.timeout, self._frames)
            self._release(worker)

    # --- requests ----------------------------------------------------------------------------

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        sha256 = model_sha256(request)
        if sha256 not in self._trusted_models:
            self._start_watcher()
            return self._uploads.exchange(request, sha256)
        for attempt in (1, 2):
            with tracing.span("queue", request.header.trace_parent, lane="default"):
                worker = self._acquire()
            try:
                return run_on(worker, request, sha256, self._trusted.timeout, self._frames)
            except WorkerCrashed:
                if attempt == 2:
                    raise
            finally:
                self._release(worker)
        raise AssertionError("unreachable")

    def trust(self, sha256: str) -> None:
        with self._changed:
            self._trusted_models.add(sha256)

    def lane(self, sha256: str) -> LaneLimits:
        settings = self.settings
        if sha256 in self._trusted_models:
            return LaneLimits(True, settings.size, settings.queue_limit, settings.timeout)
        return LaneLimits(
            False, settings.upload_size, settings.queue_limit, settings.upload_timeout
        )

    def preload(self, request: Request) -> None:
        """Trust the model of `request` (the service's default) and run it on every worker of
        the trusted lane, starting them all: the pool's warm-up. Then the upload lane's spares
        start."""
        sha256 = model_sha256(request)
        self.trust(sha256)
        self._warm_request = request
        self._start_watcher()
        held = [self._acquire() for _ in range(self._trusted.size)]
        try:
            for worker in held:
                if sha256 not in worker.models:
                    run_on(worker, request, sha256, self._trusted.timeout, self._frames)
        finally:
            for worker in held:
                self._release(worker)
        if self.sandboxed:  # without a sandbox no upload runs, and spares would idle
            self._uploads.start_spares()

    def stats(self) -> dict[str, int]:
        with self._changed:
            return {
                "size": self._trusted.size,
                "started": self._trusted.count,
                "idle": len(self._trusted.idle),
                "waiting": self._trusted.waiting,
                "restarts": self.restarts + self._uploads.restarts,
                **self._uploads.stats(),
            }

    def close(self, grace: float = 10.0) -> None:
        """Stop the idle workers now and the busy ones when their frame is done, waiting up to
        `grace` seconds for them; those still busy then are killed."""
        with self._changed:
            self._closed = True
            idle = [*self._trusted.idle, *self._uploads.close()]
            self._trusted.count -= len(self._trusted.idle)
            self._trusted.idle.clear()
            self._trusted.freed.notify_all()
        self._spawner.close()
        for worker in idle:
            worker.stop()
        deadline = time.monotonic() + grace
        with self._changed:
            while self._trusted.busy or self._uploads.busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            stuck = [*self._trusted.busy, *self._uploads.busy]
        for worker in stuck:
            logger.warning("worker %d still busy after %g s at shutdown: killed", worker.pid, grace)
            worker.kill()
