"""What the pool's two lanes share: the Worker they hand frames to, the one thread that starts
workers, the count of frames running, running a frame on a worker (naming its model by sha256
when the worker holds it), and reaping a worker that died."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from protocol import Request
from supervisor import tracing
from supervisor.launcher import LaunchSettings
from supervisor.metrics import CACHE_HIT, CACHE_MISS, WORKER_RESTARTS
from supervisor.transport import Answer, by_sha256_then_bytes

logger = logging.getLogger("gunicorn.error")


@dataclass(frozen=True)
class LaneLimits:
    """What a model's lane allows, as the Batcher (supervisor/batching.py) needs it."""

    default: bool  # the trusted lane: the service's default model
    places: int  # frames of the model running at once
    queue_limit: int  # requests waiting for a worker; more get Overloaded at once
    timeout: float  # the longest a request waits for a worker


class Worker(Protocol):
    """What the pool needs of a worker process (WarmWorker, or a test's fake)."""

    models: set[str]  # sha256 of the models it holds (loaded and ran)
    ran: set[str]  # sha256 of every model it was sent a frame for, loaded or not
    served: int  # frames it was given
    runtime: str | None  # the runtime it imported when it started (a spare's), or None

    @property
    def pid(self) -> int: ...

    def alive(self) -> bool: ...

    def unsolicited_output(self) -> bool: ...

    def exchange(self, request: Request, timeout: float) -> Answer: ...

    def exit_description(self) -> str: ...

    def stderr_tail(self) -> str: ...

    def kill(self) -> None: ...

    def stop(self, grace: float = 5.0) -> None: ...


# (launch settings, model cache budget in MB, runtime to import at start or None) -> a worker
WorkerClass = Callable[[LaunchSettings, int, str | None], Worker]


class Spawner:
    """Starts every worker from one thread: the sandbox kills a worker when the thread that
    started it ends (bwrap's --die-with-parent is PR_SET_PDEATHSIG, which is per thread), and
    the threads that ask for workers (requests, the warm-up) end."""

    def __init__(self, worker_class: WorkerClass, launch: LaunchSettings, cache_mb: int) -> None:
        self._worker_class = worker_class
        self._launch = launch
        self._cache_mb = cache_mb
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pool-spawner")

    def start(self, runtime: str | None = None) -> Worker:
        """A new worker, now (OSError when it cannot be started)."""
        return self.start_later(runtime).result()

    def start_later(self, runtime: str | None = None) -> Future[Worker]:
        return self._thread.submit(self._worker_class, self._launch, self._cache_mb, runtime)

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)


class RunningFrames:
    """The frames running on a pool's workers, in both lanes. One that starts while no other
    runs goes as solo (RequestHeader.solo), and no other does: the other cores are idle, and
    its worker may use them (LaunchSettings.solo_threads). A pool knows only its own frames,
    so its solo threads are its own share of the cores (supervisor/config.py)."""

    def __init__(self, solo: bool) -> None:
        """`solo`: whether a frame that runs alone is marked so."""
        self._solo = solo
        self._lock = threading.Lock()
        self._running = 0

    @contextmanager
    def running(self, request: Request) -> Iterator[Request]:
        """`request` while it runs, marked solo when it is alone and unmarked otherwise,
        whatever its sender said."""
        with self._lock:
            solo = self._solo and self._running == 0
            self._running += 1
        try:
            if request.header.solo != solo:
                header = dataclasses.replace(request.header, solo=solo)
                request = dataclasses.replace(request, header=header)
            yield request
        finally:
            with self._lock:
                self._running -= 1


def run_on(
    worker: Worker, request: Request, sha256: str, timeout: float, frames: RunningFrames
) -> Answer:
    """The answer of `worker` to `request`: by sha256 alone when the worker holds the model,
    in full when it does not (or evicted it since). A model the worker converted (a Keras
    file's GraphDef, which the registration stores and later frames send) is held too."""
    worker.ran.add(sha256)
    header = request.header
    with (
        tracing.span("worker", header.trace_parent, pid=worker.pid, images=header.image_count),
        frames.running(request) as request,
    ):
        answer, sent = by_sha256_then_bytes(
            lambda frame: worker.exchange(frame, timeout), request, sha256, worker.models
        )
    (CACHE_MISS if sent else CACHE_HIT).inc()
    converted = (answer[1] or {}).get("converted_model")
    if isinstance(converted, bytes):
        worker.models.add(hashlib.sha256(converted).hexdigest())
    return answer


def take_failed_idle(idle: list[Worker]) -> list[tuple[Worker, str]]:
    """The idle workers that died or wrote when nobody asked, taken out of `idle`, with why
    (the watcher's round; the lock held)."""
    found = []
    for worker in list(idle):
        if not worker.alive():
            why = "died while idle"
        elif worker.unsolicited_output():
            why = "wrote an answer nobody asked for"
        else:
            continue
        idle.remove(worker)
        found.append((worker, why))
    return found


def log_reaped(lane: str, worker: Worker, why: str) -> None:
    """Kill a worker that failed and say why, with the end of its stderr."""
    worker.kill()
    logger.warning(
        "%s worker %d %s (%s); the end of its stderr: %s",
        lane,
        worker.pid,
        why,
        worker.exit_description(),
        worker.stderr_tail() or "(nothing)",
    )
    WORKER_RESTARTS.inc()
