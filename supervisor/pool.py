"""The warm worker pool: long-lived sandboxed workers that keep models loaded.

Modelled on gunicorn's arbiter: the pool alone spawns its workers (lazily, up to each lane's
size), hands them out, watches them (every exchange has a deadline; a watcher thread checks the
idle ones), kills those past their time, reaps the dead (logging why, with their stderr's
tail) and replaces them, and drains them on shutdown with a bounded wait.

Two lanes, so that no upload can take the default model's capacity:
- the trusted lane (`size` workers) runs only the models given to `trust` or `preload`, the
  service's default model; its workers are warmed with it before they serve, and a frame whose
  worker dies is retried once on another;
- the upload lane (`upload_size` workers) runs every other model (one-off uploads and
  registered models) with the shorter `upload_timeout`. Its workers hold one model each and
  are replaced rather than handed a different one, and after `upload_frames` frames: what one
  model did to its process never meets another's frames. A model that crashes its worker, hangs
  it past its timeout or writes answers that are not its frame's is not retried: the caller gets
  ModelCrashed (422), and the model is refused at once for `quarantine_seconds`.

A request goes to an idle worker of its lane, preferably one that already holds its model,
which is then named by sha256 instead of resent. Waiting requests are bounded: past the bound
the caller gets Overloaded (HTTP 503 with Retry-After).

The worker class is a parameter (as gunicorn's `worker_class`): the real one is `WarmWorker`;
the pool's own tests give it fakes, so its rules are checked without processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol

from protocol import (
    AnswerMismatch,
    ModelCrashed,
    ModelUnknown,
    Overloaded,
    Request,
    ServiceError,
    WorkerCrashed,
    WorkerTimeout,
    WorkerUnavailable,
)
from supervisor.launcher import LaunchSettings, WarmWorker
from supervisor.metrics import CACHE_HIT, CACHE_MISS, QUEUE_DEPTH, STAGE_LATENCY, WORKER_RESTARTS
from supervisor.transport import Answer

logger = logging.getLogger("gunicorn.error")


class Worker(Protocol):
    """What the pool needs of a worker process (WarmWorker, or a test's fake)."""

    models: set[str]  # sha256 of the models it holds (loaded and ran)
    ran: set[str]  # sha256 of every model it was sent a frame for, loaded or not
    served: int  # frames it was given

    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...

    def unsolicited_output(self) -> bool: ...

    def exchange(self, request: Request, timeout: float) -> Answer: ...

    def exit_description(self) -> str: ...

    def stderr_tail(self) -> str: ...

    def kill(self) -> None: ...

    def stop(self, grace: float = 5.0) -> None: ...


WorkerClass = Callable[[LaunchSettings, int], Worker]


@dataclass(frozen=True)
class PoolSettings:
    size: int  # trusted lane: the default model's workers
    launch: LaunchSettings
    cache_mb: int = 1024
    queue_limit: int = 64  # requests waiting for a worker, per lane; more get Overloaded at once
    timeout: float = 60.0  # seconds per exchange, and the longest wait for a free worker
    upload_size: int = 1  # upload lane: workers for every other model
    upload_timeout: float = 30.0
    upload_frames: int = 100  # frames an upload worker serves before it is replaced
    quarantine_seconds: float = 600.0  # how long a model that broke its worker is refused
    watch_interval: float = 1.0  # seconds between checks of the idle workers


@dataclass
class _Lane:
    name: str
    size: int
    timeout: float
    # On the pool's lock, signalled once per worker (or place) freed: one waiter wakes, where
    # a condition shared by all would wake every waiting thread for each request.
    freed: threading.Condition
    idle: list[Worker] = field(default_factory=list)
    busy: set[Worker] = field(default_factory=set)
    count: int = 0  # idle + busy + being spawned
    waiting: int = 0


def _by_reference(request: Request, sha256: str) -> Request:
    header = dataclasses.replace(request.header, model_length=0, model_sha256=sha256)
    return Request(header, b"", request.pixels)


def _sha256(request: Request) -> str:
    return request.header.model_sha256 or hashlib.sha256(request.model).hexdigest()


class WorkerPool:
    def __init__(self, settings: PoolSettings, worker_class: WorkerClass = WarmWorker) -> None:
        self.settings = settings
        self._worker_class = worker_class
        lock = threading.RLock()
        self._changed = threading.Condition(lock)  # the pool's lock; close() waits on it
        self._trusted = _Lane("trusted", settings.size, settings.timeout, threading.Condition(lock))
        self._uploads = _Lane(
            "upload", settings.upload_size, settings.upload_timeout, threading.Condition(lock)
        )
        self._trusted_models: set[str] = set()
        self._quarantine: dict[str, tuple[float, str]] = {}  # sha256: (since, why)
        self._closed = False
        self._warm_request: Request | None = None  # run on every trusted replacement first
        self._watcher: threading.Thread | None = None
        self._spawner = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pool-spawner")
        self.restarts = 0
        self.sandboxed = settings.launch.sandbox is not None

    # --- spawn, watch, reap, replace ----------------------------------------------------------

    def _spawn(self) -> Worker:
        # Always from the one spawner thread: the sandbox kills a worker when the thread that
        # started it ends (bwrap's --die-with-parent is PR_SET_PDEATHSIG, which is per
        # thread), and the warm-up thread, for one, ends.
        return self._spawner.submit(
            self._worker_class, self.settings.launch, self.settings.cache_mb
        ).result()

    def _acquire(self, lane: _Lane, sha256: str) -> Worker:
        started = time.monotonic()
        try:
            worker = self._wait_for_worker(lane, sha256, started + lane.timeout)
        finally:
            STAGE_LATENCY["queue"].observe(time.monotonic() - started)
        if lane is self._uploads and worker.ran - {sha256}:
            # Another upload's frames ran in it: a fresh process instead.
            self._retire(lane, worker, "it ran another uploaded model")
            return self._acquire(lane, sha256)
        return worker

    def _wait_for_worker(self, lane: _Lane, sha256: str, deadline: float) -> Worker:
        with self._changed:
            if not lane.idle and lane.waiting >= self.settings.queue_limit:
                raise Overloaded(f"{lane.waiting} requests are already waiting for a worker")
            lane.waiting += 1
            queued = not lane.idle  # the gauge counts requests that wait, not every one
            if queued:
                QUEUE_DEPTH.inc()
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
                    worker = min(  # one that holds the model, else one that ran nothing else
                        lane.idle, key=lambda w: (sha256 not in w.models, bool(w.ran - {sha256}))
                    )
                    lane.idle.remove(worker)
                    lane.busy.add(worker)
                    return worker
            finally:
                lane.waiting -= 1
                if queued:
                    QUEUE_DEPTH.dec()
        self._start_watcher()
        try:
            worker = self._spawn()
        except OSError as exc:
            with self._changed:
                lane.count -= 1
                self._freed(lane)
            raise WorkerUnavailable(f"a worker could not be started: {exc}") from None
        with self._changed:
            lane.busy.add(worker)
        return worker

    def _release(self, lane: _Lane, worker: Worker) -> None:
        """Back to the idle list; a dead worker is reaped and its place freed for a new one."""
        if not worker.alive():
            self._reap(lane, worker, "died")
            return
        if lane is self._uploads and worker.served >= self.settings.upload_frames:
            self._retire(lane, worker, f"it served {worker.served} frames")
            return
        with self._changed:
            lane.busy.discard(worker)
            if not self._closed:
                lane.idle.append(worker)
                self._freed(lane)
                return
            lane.count -= 1
            self._freed(lane)
        worker.stop()

    def _retire(self, lane: _Lane, worker: Worker, why: str) -> None:
        """Stop a worker that is still well, to make room for a fresh one."""
        logger.info("retiring %s worker %d: %s", lane.name, worker.pid, why)
        worker.stop()
        with self._changed:
            lane.busy.discard(worker)
            lane.count -= 1
            self._freed(lane)

    def _freed(self, lane: _Lane) -> None:
        """A worker or a place in `lane` came free (the lock held)."""
        lane.freed.notify()
        if self._closed:
            self._changed.notify_all()  # close() waits for the busy ones

    def _reap(self, lane: _Lane, worker: Worker, why: str) -> None:
        worker.kill()
        logger.warning(
            "%s worker %d %s (%s); the end of its stderr: %s",
            lane.name,
            worker.pid,
            why,
            worker.exit_description(),
            worker.stderr_tail() or "(nothing)",
        )
        with self._changed:
            lane.busy.discard(worker)
            lane.count -= 1
            self.restarts += 1
            WORKER_RESTARTS.inc()
            self._freed(lane)

    def _start_watcher(self) -> None:
        with self._changed:
            if self._watcher is not None or self._closed:
                return
            self._watcher = threading.Thread(target=self._watch, name="pool-watcher", daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        """The arbiter's loop: reap idle workers that died or write when nobody asked, and spawn
        warm replacements, so the trusted lane is back at full size before the next request."""
        while True:
            time.sleep(self.settings.watch_interval)
            found: list[tuple[_Lane, Worker, str]] = []
            with self._changed:
                if self._closed:
                    return
                for lane in (self._trusted, self._uploads):
                    for worker in list(lane.idle):
                        if not worker.alive():
                            why = "died while idle"
                        elif worker.unsolicited_output():
                            why = "wrote an answer nobody asked for"
                        else:
                            continue
                        lane.idle.remove(worker)
                        found.append((lane, worker, why))
            for lane, worker, why in found:
                self._reap(lane, worker, why)
            if any(lane is self._trusted for lane, _, _ in found):
                self._refill()

    def _refill(self) -> None:
        warm = self._warm_request
        if warm is None:
            return
        lane, sha256 = self._trusted, _sha256(warm)
        while True:
            with self._changed:
                if self._closed or lane.count >= lane.size:
                    return
                lane.count += 1
            try:
                worker = self._spawn()
            except OSError:
                with self._changed:
                    lane.count -= 1
                return  # the next request tries again and reports why
            with self._changed:
                lane.busy.add(worker)
            # A worker that cannot warm up still serves; a dead one is reaped by _release.
            with contextlib.suppress(ServiceError):
                self._run_on(worker, warm, sha256, lane.timeout)
            self._release(lane, worker)

    # --- requests ----------------------------------------------------------------------------

    def exchange(self, request: Request, batchable: bool = False) -> Answer:
        sha256 = _sha256(request)
        if sha256 in self._trusted_models:
            return self._exchange_trusted(request, sha256)
        return self._exchange_upload(request, sha256)

    def _exchange_trusted(self, request: Request, sha256: str) -> Answer:
        lane = self._trusted
        for attempt in (1, 2):
            worker = self._acquire(lane, sha256)
            try:
                return self._run_on(worker, request, sha256, lane.timeout)
            except WorkerCrashed:
                if attempt == 2:
                    raise
            finally:
                self._release(lane, worker)
        raise AssertionError("unreachable")

    def _exchange_upload(self, request: Request, sha256: str) -> Answer:
        self._check_quarantine(sha256)
        lane = self._uploads
        worker = self._acquire(lane, sha256)
        try:
            return self._run_on(worker, request, sha256, lane.timeout)
        except (WorkerCrashed, WorkerTimeout) as exc:
            raise self._quarantined(sha256, exc) from None
        finally:
            self._release(lane, worker)

    def _check_quarantine(self, sha256: str) -> None:
        with self._changed:
            since, why = self._quarantine.get(sha256, (float("-inf"), ""))
        ago = time.monotonic() - since
        if ago < self.settings.quarantine_seconds:
            left = self.settings.quarantine_seconds - ago
            raise ModelCrashed(
                f"the model {why} {ago:.0f} s ago; it is refused for {left:.0f} s more"
            )

    def _quarantined(self, sha256: str, exc: ServiceError) -> ModelCrashed:
        if isinstance(exc, WorkerTimeout):
            why = f"held its worker past the upload timeout ({self._uploads.timeout:g} s)"
        elif isinstance(exc, AnswerMismatch):
            why = "made its worker write answers that were not its frame's"
        else:
            why = f"crashed its worker ({exc.message})"
        with self._changed:
            self._quarantine[sha256] = (time.monotonic(), why)
        return ModelCrashed(
            f"the model {why}; it is refused for {self.settings.quarantine_seconds:g} s"
        )

    def _run_on(self, worker: Worker, request: Request, sha256: str, timeout: float) -> Answer:
        worker.ran.add(sha256)
        if sha256 in worker.models:
            try:
                answer = worker.exchange(_by_reference(request, sha256), timeout)
                CACHE_HIT.inc()
                return answer
            except ModelUnknown:  # evicted from the worker's cache since: send it in full
                worker.models.discard(sha256)
        CACHE_MISS.inc()
        answer = worker.exchange(request, timeout)
        worker.models.add(sha256)  # only after it loaded and ran
        return answer

    def trust(self, sha256: str) -> None:
        with self._changed:
            self._trusted_models.add(sha256)

    def preload(self, request: Request) -> None:
        """Trust the model of `request` (the service's default) and run it on every worker of
        the trusted lane, starting them all: the pool's warm-up."""
        sha256 = _sha256(request)
        self.trust(sha256)
        self._warm_request = request
        self._start_watcher()
        lane = self._trusted
        held = [self._acquire(lane, "") for _ in range(lane.size)]
        try:
            for worker in held:
                if sha256 not in worker.models:
                    self._run_on(worker, request, sha256, lane.timeout)
        finally:
            for worker in held:
                self._release(lane, worker)

    def stats(self) -> dict[str, int]:
        with self._changed:
            return {
                "size": self._trusted.size,
                "started": self._trusted.count,
                "idle": len(self._trusted.idle),
                "waiting": self._trusted.waiting,
                "upload_started": self._uploads.count,
                "upload_idle": len(self._uploads.idle),
                "restarts": self.restarts,
            }

    def close(self, grace: float = 10.0) -> None:
        """Stop the idle workers now and the busy ones when their frame is done, waiting up to
        `grace` seconds for them; those still busy then are killed."""
        with self._changed:
            self._closed = True
            idle = [w for lane in (self._trusted, self._uploads) for w in lane.idle]
            for lane in (self._trusted, self._uploads):
                lane.count -= len(lane.idle)
                lane.idle.clear()
                lane.freed.notify_all()
        for worker in idle:
            worker.stop()
        deadline = time.monotonic() + grace
        with self._changed:
            while self._trusted.busy or self._uploads.busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            stuck = [w for lane in (self._trusted, self._uploads) for w in lane.busy]
        for worker in stuck:
            logger.warning("worker %d still busy after %g s at shutdown: killed", worker.pid, grace)
            worker.kill()
        self._spawner.shutdown(wait=False)
