"""Shared frames (supervisor/batching.py): single-image requests for the default model that wait
for a worker go to it together, as do those of uploaded models that take any batch size
(dynamic batching); each caller gets its own row; a request that finds a free worker goes at
once, alone; everything else passes straight through."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from helpers import DEFAULT_MODEL, FROZEN_MODEL, IMAGENET_LABELS, IMAGES, start_gunicorn
from prometheus_client.parser import text_string_to_metric_families

from frontend.labels import parse_labels
from protocol import InputShapeMismatch, Overloaded, Request, RequestHeader
from supervisor.batching import Batcher
from supervisor.lanes import LaneLimits
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

    def lane(self, sha256: str) -> LaneLimits:
        return self.pool.lane(sha256)

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


def test_default_model_requests_that_wait_share_frames_and_get_their_own_rows(
    counting: CountingPool, request_for
) -> None:
    batcher = Batcher(counting, max_size=1, wait_seconds=0.0, default_model_max_size=4)
    counting.frames.clear()
    photos = list(PHOTOS) * 3  # 9 requests for one worker, at most 4 a frame
    answers = run_concurrently(batcher, [request_for(DEFAULT_MODEL, p) for p in photos], False)
    assert [top1(rows) for rows, _ in answers] == [PHOTOS[p] for p in photos]
    assert sum(counting.frames) == 9
    assert len(counting.frames) < 9 and max(counting.frames) > 1, counting.frames
    assert max(counting.frames) <= 4


def test_a_request_that_finds_a_free_worker_goes_at_once_alone(
    counting: CountingPool, request_for
) -> None:
    batcher = Batcher(counting, max_size=8, wait_seconds=30.0, default_model_max_size=8)
    counting.frames.clear()
    started = time.monotonic()
    for photo, label in PHOTOS.items():
        assert top1(batcher.exchange(request_for(DEFAULT_MODEL, photo))[0]) == label
    assert counting.frames == [1, 1, 1]
    assert time.monotonic() - started < 20  # no request waited the 30 s for others


def test_with_sharing_off_each_request_is_its_own_frame(
    counting: CountingPool, request_for
) -> None:
    batcher = Batcher(counting, max_size=8, wait_seconds=0.2, default_model_max_size=1)
    counting.frames.clear()
    answers = run_concurrently(batcher, [request_for(DEFAULT_MODEL, p) for p in PHOTOS], True)
    assert [top1(rows) for rows, _ in answers] == list(PHOTOS.values())
    assert counting.frames == [1, 1, 1]


def test_a_failed_batch_fails_every_request_in_it(counting: CountingPool, request_for) -> None:
    batcher = Batcher(counting, max_size=1, wait_seconds=0.0, default_model_max_size=4)
    wrong_size = [request_for(FROZEN_MODEL, p, size=100) for p in PHOTOS]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(batcher.exchange, r) for r in wrong_size]
        for future in futures:
            with pytest.raises(InputShapeMismatch):
                future.result()
    # and the worker still serves
    assert top1(batcher.exchange(request_for(FROZEN_MODEL, "parrot.jpg"))[0]) == "macaw"


class GatedLanes:
    """A pool of `places` places for one model that answers a frame only when let go, with a
    row per image holding the image's first pixel (the caller's number)."""

    def __init__(
        self, default: bool, places: int, queue_limit: int = 64, timeout: float = 30.0
    ) -> None:
        self.sandboxed = False
        self.default, self.places, self.queue_limit = default, places, queue_limit
        self.timeout = timeout
        self.frames: list[list[int]] = []
        self.gate = threading.Semaphore(0)

    def lane(self, sha256: str) -> LaneLimits:
        return LaneLimits(self.default, self.places, self.queue_limit, self.timeout)

    def exchange(self, request: Request, batchable: bool = False):
        size = request.header.height * request.header.width * 3
        numbers = [request.pixels[i * size] for i in range(request.header.image_count)]
        self.frames.append(numbers)
        self.gate.acquire(timeout=20)  # a failed test must not hang its threads
        return [[float(n)] for n in numbers], None


def numbered(number: int) -> Request:
    return Request(RequestHeader(2, 2, 0, model_sha256="ab" * 32), b"", bytes([number]) * 12)


def waiting(batcher: Batcher) -> int:
    return sum(len(model.waiting) for model in batcher._models.values())


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.005)


@pytest.mark.parametrize("default, batchable, wait", [(True, False, 0.0), (False, True, 0.05)])
def test_waiting_requests_go_in_arrival_order_as_places_free(default, batchable, wait) -> None:
    """One place, frames of at most 2: the first goes alone; the five after it, arriving while
    it runs, go as [1, 2], [3, 4], [5], each when the frame before it ends. The default model's
    requests share frames without asking; an upload's only when its model takes batches."""
    lanes = GatedLanes(default, places=1)
    batcher = Batcher(lanes, max_size=2, wait_seconds=wait, default_model_max_size=2)
    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(batcher.exchange, numbered(0), batchable)]
        wait_for(lambda: lanes.frames == [[0]])
        for number in range(1, 6):
            futures.append(pool.submit(batcher.exchange, numbered(number), batchable))
            wait_for(lambda n=number: waiting(batcher) == n)
        for sent in range(2, 5):
            lanes.gate.release()
            wait_for(lambda s=sent: len(lanes.frames) == s)
        lanes.gate.release()
        rows = [future.result(timeout=10)[0] for future in futures]
    assert lanes.frames == [[0], [1, 2], [3, 4], [5]]
    assert [row[0][0] for row in rows] == [0, 1, 2, 3, 4, 5]
    assert batcher._models == {}  # nothing kept once all went


def test_waiting_requests_share_out_among_the_places() -> None:
    """Two places: two requests waiting go one to each as the places free, not both in the first
    frame; of six waiting, half go when a place frees, then half of the rest."""
    lanes = GatedLanes(default=True, places=2)
    batcher = Batcher(lanes, max_size=1, wait_seconds=0.0, default_model_max_size=8)
    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(batcher.exchange, numbered(n)) for n in (0, 1)]
        wait_for(lambda: len(lanes.frames) == 2)
        futures += [pool.submit(batcher.exchange, numbered(n)) for n in (2, 3)]
        wait_for(lambda: waiting(batcher) == 2)
        lanes.gate.release()
        wait_for(lambda: len(lanes.frames) == 3)
        futures += [pool.submit(batcher.exchange, numbered(n)) for n in range(4, 9)]
        wait_for(lambda: waiting(batcher) == 6)
        lanes.gate.release()
        wait_for(lambda: len(lanes.frames) == 4)
        lanes.gate.release()
        wait_for(lambda: len(lanes.frames) == 5)
        lanes.gate.release()
        wait_for(lambda: len(lanes.frames) == 6)
        for _ in range(3):
            lanes.gate.release()
        rows = [future.result(timeout=10)[0] for future in futures]
    assert [len(frame) for frame in lanes.frames] == [1, 1, 1, 3, 2, 1]
    assert sorted(n for frame in lanes.frames for n in frame) == list(range(9))
    assert [row[0][0] for row in rows] == list(range(9))


def test_past_the_lanes_queue_limit_a_request_is_refused_at_once() -> None:
    lanes = GatedLanes(default=True, places=1, queue_limit=2)
    batcher = Batcher(lanes, max_size=1, wait_seconds=0.0, default_model_max_size=8)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(batcher.exchange, numbered(0))]
        wait_for(lambda: len(lanes.frames) == 1)
        futures += [pool.submit(batcher.exchange, numbered(n)) for n in (1, 2)]
        wait_for(lambda: waiting(batcher) == 2)
        with pytest.raises(Overloaded, match="2 requests are already waiting"):
            batcher.exchange(numbered(3))
        lanes.gate.release()
        lanes.gate.release()
        assert [future.result(timeout=10)[0][0][0] for future in futures] == [0, 1, 2]
    assert lanes.frames == [[0], [1, 2]]


def test_a_request_that_waits_past_the_lanes_timeout_is_refused() -> None:
    lanes = GatedLanes(default=True, places=1, timeout=0.3)
    batcher = Batcher(lanes, max_size=1, wait_seconds=0.0, default_model_max_size=8)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(batcher.exchange, numbered(0))
        wait_for(lambda: len(lanes.frames) == 1)
        with pytest.raises(Overloaded, match=r"no worker was free within 0\.3 s"):
            batcher.exchange(numbered(1))
        assert waiting(batcher) == 0
        lanes.gate.release()
        assert first.result(timeout=10)[0][0][0] == 0
    assert batcher._models == {}


def test_a_frame_carries_no_more_images_than_a_frames_pixels_allow() -> None:
    """Images of 4000x3000 (36 MB each): two do not fit in a frame's 64 MiB, so each goes alone,
    none waiting for another's place."""
    lanes = GatedLanes(default=True, places=1)
    batcher = Batcher(lanes, max_size=1, wait_seconds=0.0, default_model_max_size=8)
    large = [
        Request(RequestHeader(3000, 4000, 0, model_sha256="ab" * 32), b"", bytes([n]) * 36_000_000)
        for n in range(3)
    ]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(batcher.exchange, request) for request in large]
        try:
            wait_for(lambda: len(lanes.frames) == 3)
        finally:
            for _ in futures:
                lanes.gate.release()
    assert sorted(lanes.frames) == [[0], [1], [2]]


def test_an_upload_that_takes_no_batches_passes_straight_through() -> None:
    lanes = GatedLanes(default=False, places=1)
    batcher = Batcher(lanes, max_size=8, wait_seconds=0.0, default_model_max_size=8)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(batcher.exchange, numbered(n), False) for n in range(3)]
        wait_for(lambda: len(lanes.frames) == 3)
        for _ in futures:
            lanes.gate.release()
    assert sorted(lanes.frames) == [[0], [1], [2]]


def frames_and_images(server_url: str) -> tuple[float, float]:
    text = requests.get(server_url + "/metrics", timeout=10).text
    family = next(
        f for f in text_string_to_metric_families(text) if f.name == "mobilenet_batch_size"
    )
    values = {s.name: s.value for s in family.samples if not s.labels.get("le")}
    return values["mobilenet_batch_size_count"], values["mobilenet_batch_size_sum"]


def classify_concurrently(url: str, photos: list[str]) -> list[str]:
    def classify(photo: str) -> str:
        files = {"image": (IMAGES / photo).read_bytes()}
        answer = requests.post(url, files=files, timeout=120)
        assert answer.status_code == 200, answer.text
        return answer.json()["predictions"][0]["label"]

    with ThreadPoolExecutor(max_workers=len(photos)) as pool:
        return list(pool.map(classify, photos))


def test_shared_frames_over_http(tmp_path: Path, register) -> None:
    """The default model's concurrent calls share frames by default; a registered model that
    takes any batch size shares them with BATCH_MAX_SIZE."""
    env = {
        "BATCH_MAX_SIZE": "8",
        "BATCH_WAIT_MS": "20",
        "WEB_CONCURRENCY": "1",
        "GUNICORN_THREADS": "16",
        "UPLOADS_PER_CLIENT": "16",  # one client sends them all here
    }
    server = start_gunicorn(tmp_path, env)
    try:
        photos = list(PHOTOS) * 4
        frames, images = frames_and_images(server.url)
        labels = classify_concurrently(server.url + "/api/v1/classify", photos)
        assert labels == [PHOTOS[p] for p in photos]
        default_frames, default_images = frames_and_images(server.url)
        assert default_images - images == len(photos)
        assert default_frames - frames < len(photos)  # some frames carried several

        registered = register(server.url, FROZEN_MODEL, IMAGENET_LABELS)
        assert registered.status_code == 201, registered.text
        assert registered.json()["input"]["batch"] is None
        url = f"{server.url}/api/v1/models/{registered.json()['id']}/classify"
        assert classify_concurrently(url, photos) == [PHOTOS[p] for p in photos]
        frames, images = frames_and_images(server.url)
        assert images - default_images == len(photos)
        assert frames - default_frames < len(photos)
    finally:
        server.stop()
