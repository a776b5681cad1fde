"""Serve mode: one long-lived worker, a stream of frames, models cached and named by sha256."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import BIRD_MODEL, DEFAULT_MODEL, IMAGENET_LABELS, IMAGES, ROOT

from frontend.images import prepare_image
from frontend.labels import parse_labels
from protocol import (
    AnswerMismatch,
    BadMagic,
    InvalidModel,
    ModelUnknown,
    Request,
    RequestHeader,
    WorkerCrashed,
    WorkerTimeout,
    WorkerUnavailable,
    decode_stream_answer,
    encode_stream_answer,
)
from supervisor.launcher import LaunchSettings, WarmWorker
from supervisor.transport import Answer
from worker.limits import Limits

LABELS = parse_labels(IMAGENET_LABELS.read_bytes())
BLOB = DEFAULT_MODEL.read_bytes()
SHA = hashlib.sha256(BLOB).hexdigest()


def frame(image: str, blob: bytes | None, sha: str | None = SHA, describe: bool = False) -> Request:
    pixels = prepare_image((IMAGES / image).read_bytes(), (224, 224)).tobytes()
    model = blob or b""
    header = RequestHeader(
        height=224, width=224, model_length=len(model), model_sha256=sha, describe=describe
    )
    return Request(header, model, pixels)


def top1(answer: Answer) -> str:
    rows, _ = answer
    return LABELS[max(range(len(rows[0])), key=rows[0].__getitem__)]


@pytest.fixture
def worker() -> Iterator[WarmWorker]:
    started = WarmWorker(LaunchSettings(), cache_mb=64)
    yield started
    started.stop()


def test_stream_of_frames_with_cached_model(worker: WarmWorker) -> None:
    assert top1(worker.exchange(frame("grace_hopper.jpg", BLOB), 60)) == "military uniform"
    # Named by sha256 only: the worker uses the copy it loaded.
    assert top1(worker.exchange(frame("cat.jpg", None), 60)) == "Egyptian cat"
    rows, description = worker.exchange(frame("parrot.jpg", None, describe=True), 60)
    assert description["format"] == "tflite" and len(rows[0]) == 1001
    assert worker.served == 3 and worker.alive()


def test_unknown_model_is_named_and_the_worker_goes_on(worker: WarmWorker) -> None:
    with pytest.raises(ModelUnknown, match=SHA):
        worker.exchange(frame("cat.jpg", None), 60)
    with pytest.raises(InvalidModel):
        worker.exchange(frame("cat.jpg", b"\x01" * 300, sha=None), 60)
    assert top1(worker.exchange(frame("hot_dog.jpg", BLOB), 60)) == "hotdog, hot dog, red hot"


def test_lru_budget_evicts_the_oldest_model() -> None:
    worker = WarmWorker(LaunchSettings(), cache_mb=12)  # room for one 3.6 MB model (x3)
    try:
        worker.exchange(frame("cat.jpg", BLOB), 60)
        bird = BIRD_MODEL.read_bytes()
        worker.exchange(frame("parrot.jpg", bird, sha=hashlib.sha256(bird).hexdigest()), 60)
        with pytest.raises(ModelUnknown):
            worker.exchange(frame("cat.jpg", None), 60)
    finally:
        worker.stop()


def test_broken_frame_ends_the_worker() -> None:
    """Serve mode driven by hand: without --answer-fd its answers go to stdout's descriptor."""
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--serve"],
        input=b"NOPE" + bytes(20),
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 2
    with pytest.raises(BadMagic, match="frame starts with"):
        decode_stream_answer(result.stdout[4:])


def test_answers_echo_the_request_id_and_go_over_their_own_channel(worker: WarmWorker) -> None:
    """The worker's stdout is not the answer channel: the supervisor gave it DEVNULL."""
    assert worker.process.stdout is None
    assert top1(worker.exchange(frame("cat.jpg", BLOB), 60)) == "Egyptian cat"
    with pytest.raises(AnswerMismatch, match="answered request 7 to request 8"):
        decode_stream_answer(encode_stream_answer([[1.0]], request_id=7)[4:], request_id=8)


def test_killed_worker_is_a_clear_error(worker: WarmWorker) -> None:
    worker.exchange(frame("cat.jpg", BLOB), 60)
    worker.process.kill()
    worker.process.wait()
    with pytest.raises(WorkerCrashed):
        worker.exchange(frame("cat.jpg", None), 10)


def test_timeout_kills_the_worker(worker: WarmWorker) -> None:
    with pytest.raises(WorkerTimeout):
        worker.exchange(frame("cat.jpg", BLOB), 0.001)
    assert not worker.alive()


def test_a_slow_start_does_not_count_against_the_frame() -> None:
    """A worker importing TensorFlow takes seconds to start: the frame's 1 s is the frame's
    own (an upload's first frame on a fresh worker was timed out, and its model quarantined,
    when the import was slow)."""
    worker = WarmWorker(LaunchSettings(), cache_mb=64, runtime="tensorflow")
    try:
        started = time.monotonic()
        assert top1(worker.exchange(frame("cat.jpg", BLOB), 1.0)) == "Egyptian cat"
        assert time.monotonic() - started > 1.0
    finally:
        worker.stop()


def test_a_worker_that_cannot_start_is_unavailable_and_killed() -> None:
    """No room to import TensorFlow: it exits before it says it started. Too little time to
    import it: it is killed. Either way no frame has reached it."""
    small = WarmWorker(LaunchSettings(limits=Limits(memory_mb=200)), 64, runtime="tensorflow")
    with pytest.raises(WorkerUnavailable, match=r"could not be started: it exited as it started"):
        small.exchange(frame("cat.jpg", BLOB), 60)
    assert not small.alive() and small.served == 0
    hurried = WarmWorker(LaunchSettings(timeout_seconds=0.5), 64, runtime="tensorflow")
    with pytest.raises(WorkerUnavailable, match=r"could not be started: .* within 0.5 s"):
        hurried.exchange(frame("cat.jpg", BLOB), 60)
    assert not hurried.alive() and hurried.served == 0


def cpu_seconds_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_cpu_limit_is_per_frame_not_per_life() -> None:
    """A long-lived worker with a 1 s CPU limit serves frames that add up to far more."""
    worker = WarmWorker(LaunchSettings(limits=Limits(cpu_seconds=1)), cache_mb=64)
    try:
        assert top1(worker.exchange(frame("cat.jpg", BLOB), 60)) == "Egyptian cat"
        cat = frame("cat.jpg", None)
        while cpu_seconds_of(worker.pid) < 2.5:
            assert top1(worker.exchange(cat, 60)) == "Egyptian cat"
        assert worker.alive()
    finally:
        worker.stop()
