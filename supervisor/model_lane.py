"""The upload lane: every model but the default one (registered models and one-off uploads),
each in warm workers of its own.

- **One model per process.** A worker runs the one model it was first given (a Keras file and
  the GraphDef it was converted to are one model) for all its life: what one model does to its
  process never meets another's frames, nor the default model's workers. A worker that was
  sent a model it could not load is stopped, not handed another.
- **Warm within a memory budget.** Workers stay up between requests with their model loaded,
  so a client switching among its models pays no process start or runtime import. Together the
  lane's workers keep within `memory_mb` of their own (anonymous) memory: past it, the least
  recently used idle worker is stopped.
- **Spares.** `spares` workers per runtime (LiteRT for TFLite models, TensorFlow for the rest)
  are started in advance with the runtime imported; a model that no worker holds goes to one,
  and costs its load and nothing more. Another spare is started in its place at once.
- **Bounded running.** At most `size` frames run at once; the rest wait, at most
  `queue_limit` of them for at most `timeout` seconds (Overloaded past either).
- **Quarantine.** A model that crashes its worker, hangs it past `timeout` or makes it write
  answers that are not its frame's is not retried: ModelCrashed, and it is refused at once for
  `quarantine_seconds`.
- **Refusals remembered.** A model the worker's checks refused (an operation outside the
  allowlist, a cost past the static check) is refused the same way whenever it is sent again
  with the same tensor names, without a worker: each refusal otherwise costs a fresh worker,
  and a client resending one hostile file would make the lane import its runtime every time.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass

from protocol import (
    AnswerMismatch,
    ModelCrashed,
    ModelTooCostly,
    OpNotAllowed,
    Overloaded,
    Request,
    ServiceError,
    WorkerCrashed,
    WorkerTimeout,
    WorkerUnavailable,
)
from protocol.formats import RUNTIME_OF, RUNTIMES, detect_format
from protocol.lru import LRU
from supervisor import tracing
from supervisor.lanes import (
    RunningFrames,
    Spawner,
    Worker,
    log_reaped,
    logger,
    run_on,
    take_failed_idle,
)
from supervisor.memory import MemoryMeasure, tree_memory
from supervisor.metrics import STAGE_LATENCY, UPLOAD_MEMORY, UPLOAD_QUEUE, WARM_MODELS
from supervisor.transport import Answer

NAME = "upload"


@dataclass(frozen=True)
class ModelLaneSettings:
    size: int = 1  # frames running at once
    timeout: float = 30.0  # seconds per frame, and the longest wait to start one
    queue_limit: int = 64
    memory_mb: int = 2048  # the lane's workers' own memory, spares included
    spares: int = 1  # per runtime
    quarantine_seconds: float = 600.0


def runtime_of(request: Request) -> str:
    """The runtime the request's model needs; TensorFlow's when the bytes do not say."""
    try:
        return RUNTIME_OF[request.header.model_format or detect_format(request.model)]
    except ServiceError:
        return "tensorflow"  # the worker's load then says what is wrong with it


class ModelLane:
    def __init__(
        self,
        settings: ModelLaneSettings,
        spawner: Spawner,
        lock: threading.Condition,
        frames: RunningFrames,
        measure: MemoryMeasure = tree_memory,
    ) -> None:
        self.settings = settings
        self._spawner = spawner
        self._frames = frames
        self._lock = lock  # the pool's: close() waits on it for busy workers
        self._slot_freed = threading.Condition(lock)
        self._measure = measure
        self.running = 0
        self.waiting = 0
        self.idle: list[Worker] = []  # least recently used first
        self.busy: set[Worker] = set()
        self.spares: dict[str, list[Worker]] = {runtime: [] for runtime in RUNTIMES}
        self._spares_starting: Counter[str] = Counter()
        self._memory: dict[Worker, int] = {}  # bytes, as last measured
        self._quarantine = Quarantine(settings.quarantine_seconds, settings.timeout)
        self._refusals: LRU[tuple[str, str | None, str | None], ServiceError] = LRU(4096)
        self.restarts = 0  # workers that died, reaped
        self.closed = False

    # --- frames ----------------------------------------------------------------------------

    def exchange(self, request: Request, sha256: str) -> Answer:
        self._quarantine.check(sha256)
        refusal = (sha256, request.header.input_tensor, request.header.output_tensor)
        refused = self._refusals.get(refusal)
        if refused is not None:
            raise type(refused)(refused.message)
        with tracing.span("queue", request.header.trace_parent, lane=NAME):
            self._take_slot()
        try:
            with tracing.span("worker start", request.header.trace_parent, lane=NAME):
                worker = self._worker_for(request, sha256)
            loaded = sha256 not in worker.models
            try:
                return run_on(worker, request, sha256, self.settings.timeout, self._frames)
            except (WorkerCrashed, WorkerTimeout) as exc:
                raise self._quarantine.add(sha256, exc) from None
            except (OpNotAllowed, ModelTooCostly) as exc:  # the bytes decide: so will they again
                self._refusals.put(refusal, exc)
                raise
            finally:
                self._release(worker, loaded)
        finally:
            with self._lock:
                self.running -= 1
                self._slot_freed.notify()

    def _take_slot(self) -> None:
        started = time.monotonic()
        deadline = started + self.settings.timeout
        with self._lock:
            full = self.running >= self.settings.size
            if full and self.waiting >= self.settings.queue_limit:
                raise Overloaded(f"{self.waiting} requests are already waiting for a worker")
            self.waiting += 1
            if full:
                UPLOAD_QUEUE.inc()
            try:
                while self.running >= self.settings.size:
                    if self.closed:
                        raise WorkerUnavailable("the worker pool is shut down")
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise Overloaded(f"no worker was free within {self.settings.timeout:g} s")
                    self._slot_freed.wait(remaining)
                if self.closed:
                    raise WorkerUnavailable("the worker pool is shut down")
                self.running += 1
            finally:
                self.waiting -= 1
                if full:
                    UPLOAD_QUEUE.dec()
        STAGE_LATENCY["queue"].observe(time.monotonic() - started)

    def _worker_for(self, request: Request, sha256: str) -> Worker:
        """The most recently used idle worker holding the model, else a spare of its runtime
        (replaced at once), else a worker started now."""
        with self._lock:
            for worker in reversed(self.idle):
                if sha256 in worker.models:
                    self.idle.remove(worker)
                    self.busy.add(worker)
                    return worker
        runtime = runtime_of(request)
        with self._lock:
            spares = self.spares[runtime]
            spare = spares.pop(0) if spares else None
            if spare is not None:
                self.busy.add(spare)
        self.start_spares()
        if spare is not None:
            return spare
        try:
            worker = self._spawner.start(runtime)
        except OSError as exc:
            raise WorkerUnavailable(f"a worker could not be started: {exc}") from None
        with self._lock:
            self.busy.add(worker)
        return worker

    def _release(self, worker: Worker, loaded: bool) -> None:
        """Back to the idle list, unless it died, was sent a model it does not hold or the lane
        is closing; after a model's load, the least recently used idle workers are stopped to
        keep the lane within its memory."""
        with self._lock:
            self.busy.discard(worker)
            alive = worker.alive()
            kept = alive and not self.closed and not worker.ran - worker.models
            if kept:
                self.idle.append(worker)
        if not alive:
            self._reap(worker, "died")
        elif not kept:
            why = "shut down" if self.closed else "it was sent a model it did not load"
            self._stop(worker, why)
        elif loaded:
            self._keep_within_budget(worker)

    def _stop(self, worker: Worker, why: str) -> None:
        logger.info("stopping %s worker %d: %s", NAME, worker.pid, why)
        worker.stop()
        self._forget(worker)

    def _reap(self, worker: Worker, why: str) -> None:
        log_reaped(NAME, worker, why)
        with self._lock:
            self.restarts += 1
        self._forget(worker)

    def _forget(self, worker: Worker) -> None:
        with self._lock:
            self._memory.pop(worker, None)
            self._lock.notify_all()  # close() waits for the busy ones

    # --- memory -------------------------------------------------------------------------------

    def _keep_within_budget(self, keep: Worker) -> None:
        with self._lock:
            workers = [*self.idle, *self.busy, *(w for s in self.spares.values() for w in s)]
        measured = self._measure([w.pid for w in workers])
        budget = self.settings.memory_mb * 1024 * 1024
        doomed = []
        with self._lock:
            for worker in workers:
                self._memory[worker] = measured.get(worker.pid, 0)
            used = sum(self._memory.values())
            for worker in list(self.idle):  # least recently used first
                if used <= budget:
                    break
                if worker is keep:
                    continue
                self.idle.remove(worker)
                used -= self._memory.get(worker, 0)
                doomed.append(worker)
        for worker in doomed:
            self._stop(worker, f"the lane is over UPLOAD_MEMORY_MB={self.settings.memory_mb}")
        with self._lock:
            WARM_MODELS.set(len(self.idle) + len(self.busy))
            UPLOAD_MEMORY.set(sum(self._memory.values()))

    # --- spares -------------------------------------------------------------------------------

    def start_spares(self) -> None:
        """Start what is missing of `spares` per runtime, in the background."""
        with self._lock:
            if self.closed:
                return
            wanted = {
                runtime: self.settings.spares
                - len(self.spares[runtime])
                - self._spares_starting[runtime]
                for runtime in RUNTIMES
            }
            for runtime, missing in wanted.items():
                self._spares_starting[runtime] += max(0, missing)
        for runtime, missing in wanted.items():
            for _ in range(missing):
                self._spawner.start_later(runtime).add_done_callback(
                    lambda started, runtime=runtime: self._spare_started(runtime, started)
                )

    def _spare_started(self, runtime: str, started: Future[Worker]) -> None:
        with self._lock:
            self._spares_starting[runtime] -= 1
            if started.cancelled() or started.exception() is not None:
                return  # the next model that needs one starts a worker and reports why
            worker = started.result()
            if not self.closed:
                self.spares[runtime].append(worker)
                return
        worker.stop()

    # --- the watcher's and the pool's -----------------------------------------------------------

    def reap_idle(self) -> bool:
        """Reap idle workers and spares that died or wrote when nobody asked (the watcher's
        round); whether there were any."""
        with self._lock:
            groups = (self.idle, *self.spares.values())
            found = [failed for group in groups for failed in take_failed_idle(group)]
        for worker, why in found:
            self._reap(worker, why)
        return bool(found)

    def close(self) -> list[Worker]:
        """Stop taking frames; the idle workers and spares, for the pool to stop (the lock
        held)."""
        self.closed = True
        self._slot_freed.notify_all()
        idle = [*self.idle, *(w for s in self.spares.values() for w in s)]
        self.idle.clear()
        for spares in self.spares.values():
            spares.clear()
        return idle

    def stats(self) -> dict[str, int]:
        return {
            "upload_running": self.running,
            "upload_waiting": self.waiting,
            "upload_warm": len(self.idle) + len(self.busy),
            "upload_idle": len(self.idle),
            "upload_spares": sum(len(s) for s in self.spares.values()),
            "upload_memory_mb": sum(self._memory.values()) // (1024 * 1024),
        }


class Quarantine:
    """Models that crashed their worker, hung it past the upload timeout or made it write
    answers that were not its frame's: refused at once for `seconds`."""

    def __init__(self, seconds: float, timeout: float) -> None:
        self.seconds = seconds
        self.timeout = timeout
        self._lock = threading.Lock()
        self._since: dict[str, tuple[float, str]] = {}  # sha256: (since, why)

    def check(self, sha256: str) -> None:
        with self._lock:
            since, why = self._since.get(sha256, (float("-inf"), ""))
        ago = time.monotonic() - since
        if ago < self.seconds:
            left = self.seconds - ago
            raise ModelCrashed(
                f"the model {why} {ago:.0f} s ago; it is refused for {left:.0f} s more"
            )

    def add(self, sha256: str, exc: ServiceError) -> ModelCrashed:
        """Remember the model, and the error its caller gets."""
        if isinstance(exc, WorkerTimeout):
            why = f"held its worker past the upload timeout ({self.timeout:g} s)"
        elif isinstance(exc, AnswerMismatch):
            why = "made its worker write answers that were not its frame's"
        else:
            why = f"crashed its worker ({exc.message})"
        with self._lock:
            self._since[sha256] = (time.monotonic(), why)
        return ModelCrashed(f"the model {why}; it is refused for {self.seconds:g} s")
