"""The pool's rules, with fake workers and no processes: lanes, overload, retry, reaping,
timeouts, quarantine, warm workers per uploaded model within a memory budget, spares, and the
bounded drain at shutdown (tests/test_pool.py runs the real thing)."""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import ClassVar

import pytest
from prometheus_client import REGISTRY

from protocol import (
    AnswerMismatch,
    InvalidModel,
    ModelCrashed,
    ModelUnknown,
    OpNotAllowed,
    Overloaded,
    Request,
    RequestHeader,
    WorkerCrashed,
    WorkerTimeout,
    WorkerUnavailable,
)
from supervisor.launcher import LaunchSettings
from supervisor.pool import PoolSettings, WorkerPool
from supervisor.transport import Answer

DEFAULT = b"the default model"
UPLOAD = b"an uploaded model"
OTHER = b"another uploaded model"


def request(model: bytes) -> Request:
    header = RequestHeader(
        height=1, width=1, model_length=len(model), model_sha256=hashlib.sha256(model).hexdigest()
    )
    return Request(header, model, bytes(3))


def queued(lane: str) -> float | None:
    """The queue-depth gauge of `lane`, as /metrics shows it."""
    return REGISTRY.get_sample_value("mobilenet_queue_depth", {"lane": lane})


TFLITE_UPLOAD = b"\x1c\x00\x00\x00TFL3 an uploaded TFLite model"
MB = 1024 * 1024


class FakeWorker:
    """Answers [[pid]] (or what `FakeWorker.behaviour` returns); what a frame does to it is
    decided by `FakeWorker.behaviour`. Each uses `FakeWorker.memory` bytes."""

    behaviour: Callable[[FakeWorker, Request], Answer | None] = staticmethod(
        lambda worker, request: None
    )
    started: ClassVar[list[FakeWorker]] = []
    next_pid = 100
    memory = 100 * MB

    def __init__(self, launch: LaunchSettings, cache_mb: int, runtime: str | None) -> None:
        FakeWorker.next_pid += 1
        self.pid = FakeWorker.next_pid
        self.runtime = runtime
        self.models: set[str] = set()
        self.ran: set[str] = set()
        self.served = 0
        self.dead = False
        self.stopped = False
        self.chatter = False
        self.frames: list[Request] = []
        FakeWorker.started.append(self)

    def alive(self) -> bool:
        return not self.dead

    def unsolicited_output(self) -> bool:
        return self.chatter

    def exchange(self, request: Request, timeout: float) -> Answer:
        self.served += 1
        if request.header.model_length == 0 and request.header.model_sha256 not in self.models:
            raise ModelUnknown("not held")
        self.frames.append(request)
        answer = FakeWorker.behaviour(self, request)
        return answer if isinstance(answer, tuple) else ([[float(self.pid)]], None)

    def exit_description(self) -> str:
        return "killed by SIGSEGV" if self.dead else "still running"

    def stderr_tail(self) -> str:
        return "Segmentation fault" if self.dead else ""

    def kill(self) -> None:
        self.dead = True

    def stop(self, grace: float = 5.0) -> None:
        self.stopped = True


@pytest.fixture
def pools() -> Iterator[Callable[..., WorkerPool]]:
    FakeWorker.started = []
    FakeWorker.behaviour = staticmethod(lambda worker, request: None)
    made: list[WorkerPool] = []

    def make(**settings) -> WorkerPool:
        options = {
            "size": 2,
            "launch": LaunchSettings(),
            "watch_interval": 0.05,
            "upload_spares": 0,
            **settings,
        }
        pool = WorkerPool(
            PoolSettings(**options),
            worker_class=FakeWorker,
            measure=lambda pids: dict.fromkeys(pids, FakeWorker.memory),
        )
        pool.preload(request(DEFAULT))
        made.append(pool)
        return pool

    yield make
    for pool in made:
        pool.close(grace=0.1)


def behave(rule: Callable[[FakeWorker, Request], Answer | None]) -> None:
    FakeWorker.behaviour = staticmethod(rule)


def wait_until(condition: Callable[[], bool], seconds: float = 5) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.01)


def test_preload_starts_and_warms_the_trusted_lane(pools) -> None:
    pool = pools()
    assert pool.stats()["started"] == 2 and pool.stats()["idle"] == 2
    assert all(len(w.frames) == 1 for w in FakeWorker.started)
    pool.exchange(request(DEFAULT))
    # the model it holds is named by sha256, not resent
    assert any(f.header.model_length == 0 for w in FakeWorker.started for f in w.frames)


def test_uploads_never_run_on_the_default_models_workers(pools) -> None:
    pool = pools(upload_size=1)
    trusted = set(FakeWorker.started)
    answers = [pool.exchange(request(UPLOAD))[0][0][0] for _ in range(3)]
    (upload_worker,) = set(FakeWorker.started) - trusted
    assert answers == [upload_worker.pid] * 3
    assert all(not any(f.model == UPLOAD for f in w.frames) for w in trusted)


def test_a_held_upload_lane_leaves_the_default_model_served(pools) -> None:
    pool = pools(upload_size=1, upload_timeout=5)
    release = threading.Event()
    behave(lambda worker, req: release.wait() if req.model == UPLOAD else None)
    held = threading.Thread(target=pool.exchange, args=(request(UPLOAD),))
    held.start()
    try:
        started = time.monotonic()
        for _ in range(5):
            assert pool.exchange(request(DEFAULT))
        assert time.monotonic() - started < 1
    finally:
        release.set()
        held.join()


def test_a_frame_that_runs_alone_goes_solo_in_either_lane(pools) -> None:
    pool = pools(upload_size=1, launch=LaunchSettings(solo_threads=2))
    upload = hashlib.sha256(UPLOAD).hexdigest()

    def last_went_solo(model: bytes) -> bool:
        sha256 = hashlib.sha256(model).hexdigest()
        frames = [f for w in FakeWorker.started for f in w.frames]
        return [f.header.solo for f in frames if f.header.model_sha256 == sha256][-1]

    pool.exchange(request(DEFAULT))
    assert last_went_solo(DEFAULT)
    pool.exchange(request(UPLOAD))
    assert last_went_solo(UPLOAD)

    # while an upload's frame runs, the default model's frames do not go solo
    release, entered = threading.Event(), threading.Event()

    def hold_uploads(worker: FakeWorker, req: Request) -> None:
        if req.header.model_sha256 == upload:
            entered.set()
            release.wait()

    behave(hold_uploads)
    held = threading.Thread(target=pool.exchange, args=(request(UPLOAD),))
    held.start()
    try:
        assert entered.wait(5)
        pool.exchange(request(DEFAULT))
        assert not last_went_solo(DEFAULT)
        marked = request(DEFAULT)  # a frame that comes marked solo (over TCP, say) is unmarked
        marked = Request(dataclasses.replace(marked.header, solo=True), marked.model, bytes(3))
        pool.exchange(marked)
        assert not last_went_solo(DEFAULT)
    finally:
        release.set()
        held.join()
    pool.exchange(request(DEFAULT))
    assert last_went_solo(DEFAULT)  # alone again once the other is done


def test_one_solo_thread_means_no_frame_goes_solo(pools) -> None:
    pool = pools(launch=LaunchSettings(solo_threads=1))
    for _ in range(3):
        pool.exchange(request(DEFAULT))
    marked = request(DEFAULT)
    pool.exchange(Request(dataclasses.replace(marked.header, solo=True), marked.model, bytes(3)))
    assert not any(f.header.solo for w in FakeWorker.started for f in w.frames)


def test_overload_when_the_queue_is_full(pools) -> None:
    pool = pools(size=1, queue_limit=1, timeout=5)
    release, entered = threading.Event(), threading.Event()

    def hold(worker, req):
        entered.set()
        release.wait()

    behave(hold)
    busy = threading.Thread(target=pool.exchange, args=(request(DEFAULT),))
    busy.start()
    entered.wait(5)
    waiter = threading.Thread(target=pool.exchange, args=(request(DEFAULT),))
    waiter.start()
    deadline = time.monotonic() + 5
    while pool.stats()["waiting"] < 1:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # the waiting request shows in its lane's gauge, and only there
    assert (queued("default"), queued("upload")) == (1, 0)
    with pytest.raises(Overloaded, match="already waiting"):
        pool.exchange(request(DEFAULT))
    release.set()
    busy.join()
    waiter.join()
    assert queued("default") == 0


def test_requests_waiting_for_the_upload_lane_show_in_its_gauge(pools) -> None:
    pool = pools(upload_size=1, upload_timeout=5)
    release, entered = threading.Event(), threading.Event()

    def hold_uploads(worker, req) -> None:
        if req.model == UPLOAD:
            entered.set()
            release.wait()

    behave(hold_uploads)
    held = threading.Thread(target=pool.exchange, args=(request(UPLOAD),))
    held.start()
    entered.wait(5)
    waiter = threading.Thread(target=pool.exchange, args=(request(UPLOAD),))
    waiter.start()
    try:
        deadline = time.monotonic() + 5
        while queued("upload") < 1:
            assert time.monotonic() < deadline, pool.stats()
            time.sleep(0.01)
        assert queued("default") == 0
    finally:
        release.set()
        held.join()
        waiter.join()
    assert queued("upload") == 0


def test_waiting_longer_than_the_timeout_is_overload(pools) -> None:
    pool = pools(size=1, timeout=0.2)
    release = threading.Event()
    behave(lambda worker, req: release.wait())
    busy = threading.Thread(target=pool.exchange, args=(request(DEFAULT),))
    busy.start()
    try:
        with pytest.raises(Overloaded, match=r"within 0\.2 s"):
            pool.exchange(request(DEFAULT))
    finally:
        release.set()
        busy.join()


def test_a_trusted_frame_whose_worker_dies_is_retried_once_and_the_worker_replaced(pools) -> None:
    pool = pools()
    victims: list[FakeWorker] = []

    def die_once(worker, req):
        if not victims:
            victims.append(worker)
            worker.dead = True
            raise WorkerCrashed("the worker died (killed by SIGKILL)")

    behave(die_once)
    rows, _ = pool.exchange(request(DEFAULT))
    assert rows[0][0] != victims[0].pid  # answered by the other worker
    assert pool.stats()["restarts"] == 1


def test_an_upload_that_crashes_its_worker_is_not_retried_and_is_remembered(
    pools, caplog: pytest.LogCaptureFixture
) -> None:
    pool = pools(upload_size=2)

    def crash(worker, req):
        if req.model == UPLOAD or req.header.model_sha256 == hashlib.sha256(UPLOAD).hexdigest():
            worker.dead = True
            raise WorkerCrashed("the worker died (killed by SIGSEGV)")

    behave(crash)
    spawned = len(FakeWorker.started)
    with pytest.raises(ModelCrashed, match="crashed its worker"):
        pool.exchange(request(UPLOAD))
    assert len(FakeWorker.started) == spawned + 1  # one worker, no second try
    with pytest.raises(ModelCrashed, match="s ago; it is refused for"):
        pool.exchange(request(UPLOAD))
    assert len(FakeWorker.started) == spawned + 1  # refused without running
    assert "died (killed by SIGSEGV); the end of its stderr: Segmentation fault" in caplog.text
    assert pool.exchange(request(OTHER))  # other uploads still run


def test_timeouts_and_forged_answers_quarantine_uploads_too(pools) -> None:
    pool = pools()
    behave(lambda worker, req: (_ for _ in ()).throw(WorkerTimeout("took longer than 30 s")))
    with pytest.raises(ModelCrashed, match="past the upload timeout"):
        pool.exchange(request(UPLOAD))
    behave(lambda worker, req: (_ for _ in ()).throw(AnswerMismatch("answered request 1 to 2")))
    with pytest.raises(ModelCrashed, match="not its frame's"):
        pool.exchange(request(OTHER))


def test_model_errors_are_not_quarantined(pools) -> None:
    pool = pools()
    behave(lambda worker, req: (_ for _ in ()).throw(InvalidModel("not a model")))
    for _ in range(2):
        with pytest.raises(InvalidModel):
            pool.exchange(request(UPLOAD))


def test_a_worker_that_could_not_start_does_not_quarantine_the_model(pools) -> None:
    """Its model never reached it: the request gets WorkerUnavailable, and the next one for
    the same model runs on a new worker."""
    pool = pools()

    def fail_to_start(worker, req):
        if len(worker.frames) == 1 and worker.runtime is not None:  # a new upload-lane worker
            worker.dead = True
            raise WorkerUnavailable("a worker could not be started: it exited as it started")

    behave(fail_to_start)
    with pytest.raises(WorkerUnavailable, match="could not be started"):
        pool.exchange(request(UPLOAD))
    behave(lambda worker, req: None)
    assert pool.exchange(request(UPLOAD))[0] == [[float(FakeWorker.started[-1].pid)]]


def test_a_refused_model_sent_again_is_refused_without_a_worker(pools) -> None:
    """The allowlist's refusal depends on the bytes (and the tensors asked for) alone: the same
    model again costs no fresh worker, where each refusal once cost a runtime's import."""
    pool = pools()
    behave(lambda worker, req: (_ for _ in ()).throw(OpNotAllowed("uses ReadFile")))
    with pytest.raises(OpNotAllowed, match="ReadFile"):
        pool.exchange(request(UPLOAD))
    given = sum(len(w.frames) for w in FakeWorker.started)
    with pytest.raises(OpNotAllowed, match="ReadFile"):
        pool.exchange(request(UPLOAD))
    assert sum(len(w.frames) for w in FakeWorker.started) == given  # no worker saw it again
    behave(lambda worker, req: None)
    assert pool.exchange(request(OTHER))  # other bytes still run


def test_each_uploaded_model_stays_warm_in_a_worker_of_its_own(pools) -> None:
    pool = pools(upload_size=1)
    trusted = set(FakeWorker.started)
    answers = [pool.exchange(request(model))[0][0][0] for model in (UPLOAD, OTHER) * 3]
    uploads = [w for w in FakeWorker.started if w not in trusted]
    assert len(uploads) == 2  # one process per model, each started once
    assert answers == [uploads[0].pid, uploads[1].pid] * 3
    for worker, model in zip(uploads, (UPLOAD, OTHER), strict=True):
        sha256 = hashlib.sha256(model).hexdigest()
        assert {f.header.model_sha256 for f in worker.frames} == {sha256}  # never another's
        assert [f.header.model_length for f in worker.frames][1:] == [0, 0]  # named, not resent
    assert pool.stats()["upload_warm"] == 2


def test_a_model_no_worker_holds_goes_to_a_spare_of_its_runtime(pools) -> None:
    pool = pools(launch=LaunchSettings(sandbox=object()), upload_spares=1)  # type: ignore[arg-type]

    def spares() -> dict[str, int]:
        return {w.runtime: w.pid for w in FakeWorker.started if w.runtime and not w.frames}

    wait_until(lambda: set(spares()) == {"tflite", "tensorflow"})
    ready = spares()
    assert pool.exchange(request(TFLITE_UPLOAD))[0][0][0] == ready["tflite"]
    assert pool.exchange(request(UPLOAD))[0][0][0] == ready["tensorflow"]
    # each spare taken is replaced at once, with its runtime imported
    wait_until(lambda: len(spares()) == 2 and set(spares().values()).isdisjoint(ready.values()))
    assert pool.stats()["upload_spares"] == 2


def test_past_the_memory_budget_the_least_recently_used_model_is_stopped(pools) -> None:
    pool = pools(upload_memory_mb=250)  # room for two workers of 100 MB
    first = pool.exchange(request(UPLOAD))[0][0][0]
    second = pool.exchange(request(OTHER))[0][0][0]
    assert pool.exchange(request(UPLOAD))[0][0][0] == first  # UPLOAD is now the most recent
    third = pool.exchange(request(TFLITE_UPLOAD))[0][0][0]
    stopped = [w.pid for w in FakeWorker.started if w.stopped]
    assert stopped == [second]  # OTHER's, the least recently used
    assert pool.exchange(request(UPLOAD))[0][0][0] == first
    assert pool.exchange(request(TFLITE_UPLOAD))[0][0][0] == third
    assert pool.stats()["upload_memory_mb"] == 200


def test_a_worker_that_could_not_load_its_model_is_never_handed_another(pools) -> None:
    pool = pools()
    behave(lambda worker, req: (_ for _ in ()).throw(InvalidModel("no")) if req.model else None)
    with pytest.raises(InvalidModel):
        pool.exchange(request(UPLOAD))
    refused = FakeWorker.started[-1]
    assert refused.stopped and not refused.dead
    behave(lambda worker, req: None)
    assert pool.exchange(request(OTHER))[0][0][0] != refused.pid


def test_a_converted_model_stays_with_the_worker_that_converted_it(pools) -> None:
    """A Keras file's registration stores the GraphDef its worker converted it to; the frames
    that follow send that GraphDef, and find it already loaded."""
    converted = b"the GraphDef a Keras file was converted to"
    behave(lambda worker, req: ([[1.0]], {"converted_model": converted}) if req.model else None)
    pool = pools()
    converter = pool.exchange(request(UPLOAD)) and FakeWorker.started[-1]
    behave(lambda worker, req: None)
    assert pool.exchange(request(converted))[0][0][0] == converter.pid
    assert converter.frames[-1].header.model_length == 0  # named by sha256, not resent


def test_the_watcher_reaps_idle_workers_that_die_or_write_unasked_and_refills(pools) -> None:
    pool = pools()
    dying, chatty = FakeWorker.started[:2]
    dying.dead, chatty.chatter = True, True
    deadline = time.monotonic() + 5
    while pool.stats()["restarts"] < 2 or pool.stats()["idle"] < 2:
        assert time.monotonic() < deadline, pool.stats()
        time.sleep(0.02)
    replacements = FakeWorker.started[2:]
    assert len(replacements) == 2
    assert all(w.frames and w.frames[0].model == DEFAULT for w in replacements)  # warmed
    assert chatty.dead  # killed, not just dropped


def test_close_waits_a_bounded_time_for_busy_workers_then_kills_them(pools) -> None:
    pool = pools(size=1)
    release = threading.Event()
    behave(lambda worker, req: release.wait(10))
    busy = threading.Thread(target=lambda: pool.exchange(request(DEFAULT)))
    busy.start()
    while pool.stats()["idle"] != 0:
        time.sleep(0.01)
    started = time.monotonic()
    pool.close(grace=0.3)
    assert 0.3 <= time.monotonic() - started < 2
    (worker,) = FakeWorker.started
    assert worker.dead
    release.set()
    busy.join()
    with pytest.raises(Exception, match="shut down"):
        pool.exchange(request(DEFAULT))
