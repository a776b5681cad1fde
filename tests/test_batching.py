"""Dynamic batching: concurrent single-image requests for a model that takes any batch size go
to the worker as one frame; everything else passes straight through."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from helpers import DEFAULT_MODEL, FROZEN_MODEL, IMAGENET_LABELS, IMAGES, start_gunicorn
from prometheus_client.parser import text_string_to_metric_families

from frontend.labels import parse_labels
from protocol import InputShapeMismatch, Request
from supervisor.batching import Batcher
from supervisor.launcher import LaunchSettings
from supervisor.pool import PoolSettings, WorkerPool

LABELS = parse_labels(IMAGENET_LABELS.read_bytes())
PHOTOS = {"cat.jpg": "Egyptian cat", "grace_hopper.jpg": "military uniform", "parrot.jpg": "macaw"}


class CountingPool:
    """The real pool, with a count of the frames and images it was given."""

    def __init__(self, pool: WorkerPool) -> None:
        self.pool = pool
        self.sandboxed = pool.sandboxed
        self.frames: list[int] = []
        self._lock = threading.Lock()

    def exchange(self, request: Request, batchable: bool = False):
        with self._lock:
            self.frames.append(request.header.image_count)
        return self.pool.exchange(request)

    def close(self) -> None:
        self.pool.close()


@pytest.fixture(scope="module")
def counting(request_for) -> CountingPool:
    """One trusted worker holding both models (as the default model is held)."""
    pool = WorkerPool(PoolSettings(size=1, launch=LaunchSettings(), cache_mb=512))
    for model in (DEFAULT_MODEL, FROZEN_MODEL):
        pool.preload(request_for(model, "cat.jpg"))
    yield CountingPool(pool)
    pool.close()


def top1(rows: list[list[float]]) -> str:
    (row,) = rows
    return LABELS[max(range(len(row)), key=row.__getitem__)]


def run_concurrently(batcher: Batcher, requests_: list[Request], batchable: bool) -> list:
    with ThreadPoolExecutor(max_workers=len(requests_)) as pool:
        futures = [pool.submit(batcher.exchange, r, batchable) for r in requests_]
        return [f.result() for f in futures]


def test_concurrent_requests_share_frames_and_get_their_own_rows(
    counting: CountingPool, request_for
) -> None:
    batcher = Batcher(counting, max_size=8, wait_seconds=0.2)
    counting.pool.exchange(request_for(FROZEN_MODEL, "cat.jpg"))  # loaded before timing matters
    counting.frames.clear()
    photos = list(PHOTOS) * 3  # 9 requests, at most 8 a batch
    answers = run_concurrently(batcher, [request_for(FROZEN_MODEL, p) for p in photos], True)
    assert [top1(rows) for rows, _ in answers] == [PHOTOS[p] for p in photos]
    assert sum(counting.frames) == 9
    assert len(counting.frames) < 9 and max(counting.frames) > 1, counting.frames
    assert max(counting.frames) <= 8


def test_not_batchable_passes_through(counting: CountingPool, request_for) -> None:
    batcher = Batcher(counting, max_size=8, wait_seconds=0.2)
    counting.frames.clear()
    answers = run_concurrently(batcher, [request_for(DEFAULT_MODEL, p) for p in PHOTOS], False)
    assert [top1(rows) for rows, _ in answers] == list(PHOTOS.values())
    assert counting.frames == [1, 1, 1]


def test_a_failed_batch_fails_every_request_in_it(counting: CountingPool, request_for) -> None:
    batcher = Batcher(counting, max_size=4, wait_seconds=0.2)
    wrong_size = [request_for(FROZEN_MODEL, p, size=100) for p in PHOTOS]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(batcher.exchange, r, True) for r in wrong_size]
        for future in futures:
            with pytest.raises(InputShapeMismatch):
                future.result()
    # and the worker still serves
    assert top1(batcher.exchange(request_for(FROZEN_MODEL, "parrot.jpg"), True)[0]) == "macaw"


def test_batching_over_http(tmp_path: Path, register) -> None:
    env = {
        "BATCH_MAX_SIZE": "8",
        "BATCH_WAIT_MS": "20",
        "WEB_CONCURRENCY": "1",
        "UPLOADS_PER_CLIENT": "16",  # one client sends them all here
    }
    server = start_gunicorn(tmp_path, env)
    try:
        registered = register(server.url, FROZEN_MODEL, IMAGENET_LABELS)
        assert registered.status_code == 201, registered.text
        assert registered.json()["input"]["batch"] is None
        url = f"{server.url}/api/v1/models/{registered.json()['id']}/classify"

        def classify(photo: str) -> str:
            files = {"image": (IMAGES / photo).read_bytes()}
            answer = requests.post(url, files=files, timeout=120)
            assert answer.status_code == 200, answer.text
            return answer.json()["predictions"][0]["label"]

        photos = list(PHOTOS) * 4
        with ThreadPoolExecutor(max_workers=len(photos)) as pool:
            assert list(pool.map(classify, photos)) == [PHOTOS[p] for p in photos]
        text = requests.get(server.url + "/metrics", timeout=10).text
        family = next(
            f for f in text_string_to_metric_families(text) if f.name == "mobilenet_batch_size"
        )
        values = {s.name: s.value for s in family.samples if not s.labels.get("le")}
        assert values["mobilenet_batch_size_sum"] == len(photos)
        assert values["mobilenet_batch_size_count"] < len(photos)  # some frames carried several
    finally:
        server.stop()
