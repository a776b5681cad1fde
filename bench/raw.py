"""The model's own speed, in process: one runtime per core (a process each, as the pool has),
the image prepared once, classify in a loop. The service is measured against this."""

from __future__ import annotations

import multiprocessing
import statistics
import time
from pathlib import Path

import numpy as np

from protocol import Normalization


def _loop(
    model_path: str, pixels: np.ndarray, seconds: float, queue: multiprocessing.Queue
) -> None:
    from worker.runtimes import RuntimeOptions, load_model

    model = load_model(Path(model_path).read_bytes(), None, None, None, RuntimeOptions())
    model.classify(pixels, Normalization())  # warm
    latencies, end = [], time.perf_counter() + seconds
    while (start := time.perf_counter()) < end:
        model.classify(pixels, Normalization())
        latencies.append(time.perf_counter() - start)
    queue.put(latencies)


def raw_throughput(model: Path, pixels: np.ndarray, processes: int, seconds: float = 10) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_loop, args=(str(model), pixels[np.newaxis], seconds, queue))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    runs = [queue.get() for _ in workers]
    for worker in workers:
        worker.join()
    return {
        "processes": processes,
        "throughput_ips": sum(len(r) for r in runs) / seconds,
        "p50_ms": statistics.median(x for r in runs for x in r) * 1000,
    }
