"""Solo frames on the real model: a TFLite model's solo interpreter runs a frame on more threads
and answers the same, in the runtime and in a warm worker
(tests/test_pool_rules.py checks which frames the pool sends solo)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
from helpers import DEFAULT_MODEL, IMAGENET_LABELS, PROBABILITY_TOLERANCE, expected_rows

from frontend.images import prepare_image
from frontend.labels import parse_labels
from protocol import Normalization, Request, RequestHeader
from supervisor.launcher import LaunchSettings, WarmWorker
from worker.runtimes.tflite import TfliteModel

LABELS = parse_labels(IMAGENET_LABELS.read_bytes())
ROWS = expected_rows("imagenet")


def thread_cpu_ns(pid: int) -> dict[int, int]:
    """Each thread of process `pid`: the nanoseconds it ran (its schedstat's first field)."""
    found = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as stat:
                found[int(tid)] = int(stat.read().split()[0])
        except FileNotFoundError:  # the thread ended
            continue
    return found


def pixels_of(row) -> np.ndarray:
    return prepare_image(row.image.read_bytes(), (224, 224))[np.newaxis]


def test_a_solo_frame_runs_on_the_solo_threads_and_answers_the_same() -> None:
    before = set(thread_cpu_ns(os.getpid()))
    model = TfliteModel(DEFAULT_MODEL.read_bytes(), None, None, threads=1, solo_threads=2)
    started = thread_cpu_ns(os.getpid())
    pool_threads = set(started) - before - {threading.get_native_id()}
    assert len(pool_threads) == 1  # the solo interpreter's one thread besides the caller's

    def pool_cpu_ns() -> int:
        now = thread_cpu_ns(os.getpid())
        return sum(now.get(tid, 0) for tid in pool_threads)

    row = ROWS[0]
    pixels = pixels_of(row)
    idle = pool_cpu_ns()
    plain = np.concatenate([model.classify(pixels, Normalization()) for _ in range(10)])
    time.sleep(0.1)  # a thread's time is accounted once it sleeps
    after_plain = pool_cpu_ns()
    solo = np.concatenate([model.classify(pixels, Normalization(), solo=True) for _ in range(10)])
    time.sleep(0.1)
    after_solo = pool_cpu_ns()

    assert after_plain - idle < 1_000_000  # plain frames leave the solo thread asleep
    assert after_solo - after_plain > 5_000_000  # ten solo frames gave it a share of the work
    assert np.array_equal(plain, solo)
    assert LABELS[int(np.argmax(solo[0]))] == row.label


def run_and_time_helpers(worker: WarmWorker, frames: list[Request]) -> tuple[list, int]:
    """The worker's answers to `frames`, and the CPU time its threads but the busiest spent on
    them: the time the main thread shared out."""
    before = thread_cpu_ns(worker.pid)
    answers = [list(worker.exchange(frame, timeout=60)[0][0]) for frame in frames]
    time.sleep(0.1)  # a thread still spinning after the last frame is accounted once it sleeps
    after = thread_cpu_ns(worker.pid)
    spent = sorted(after[tid] - before.get(tid, 0) for tid in after)
    return answers, sum(spent[:-1])


def test_a_warm_worker_runs_solo_frames_on_its_solo_threads() -> None:
    model = DEFAULT_MODEL.read_bytes()

    def frames(solo: bool) -> list[Request]:
        header = RequestHeader(height=224, width=224, model_length=len(model), solo=solo)
        return [Request(header, model, pixels_of(row).tobytes()) for row in ROWS[:3]] * 3

    answers, helpers_ns = {}, {}
    for solo_threads in (1, 2):
        worker = WarmWorker(LaunchSettings(solo_threads=solo_threads), cache_mb=256)
        try:
            run_and_time_helpers(worker, frames(False)[:1])  # the model loads
            for solo in (False, True):
                answers[solo_threads, solo], helpers_ns[solo_threads, solo] = run_and_time_helpers(
                    worker, frames(solo)
                )
        finally:
            worker.stop()
    assert answers[1, False] == answers[2, False] == answers[2, True]
    for row, probabilities in zip(ROWS[:3], answers[2, True], strict=False):
        best = int(np.argmax(probabilities))
        assert LABELS[best] == row.label
        assert abs(probabilities[best] - row.probability) <= PROBABILITY_TOLERANCE
    # a solo frame shares its work with a second thread only where solo threads are 2
    assert helpers_ns[2, True] > 2_000_000, helpers_ns
    assert max(helpers_ns[1, True], helpers_ns[2, False]) < 1_000_000, helpers_ns
