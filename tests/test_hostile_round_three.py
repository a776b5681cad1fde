"""Hostile uploads, round three: each attack of the report that the frontend alone decides, run
in-process with fake workers (tests/helpers.py), which describe whatever input size a model
declares. A model's declared input size no longer makes the frontend allocate, and the
calibration photos' cache stays within its bytes whatever sizes are asked for, and decoding is
budgeted per call and per client from the images' headers, and one client's model work is
bounded by what it costs (an explanation counts 1 + grid² classifications), and one client's
registrations fill its share of the store, not the store. The attacks that need TensorFlow
(Keras, SavedModel, TFLite padding) are in tests/test_hostile_models.py."""

from __future__ import annotations

import io
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from helpers import IMAGES, MODELS, FakeTransport, fake_app, fake_model, labels_for
from PIL import Image

from frontend import normalization

LABELS = labels_for(3)


def _png(size: tuple[int, int] = (1, 1)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Flask]:
    flask_app, _ = fake_app(tmp_path, MODELS, REGISTRATIONS_PER_HOUR=1000)
    yield flask_app


def _upload(client: FlaskClient, model: bytes, images: int, path: str = "/api/v1/classify"):
    return client.post(
        path,
        data={
            "images" if path.endswith("classify") else "image": [
                (io.BytesIO(_png()), f"{i}.png") for i in range(images)
            ],
            "model_file": (io.BytesIO(model), "m.tflite"),
            "label_file": (io.BytesIO(LABELS), "labels.txt"),
        },
        content_type="multipart/form-data",
    )


def _peak_mb(call) -> tuple[object, float]:
    tracemalloc.start()
    try:
        answer = call()
        return answer, tracemalloc.get_traced_memory()[1] / 1e6
    finally:
        tracemalloc.stop()


def test_a_huge_declared_input_is_refused_before_anything_is_resized(app: Flask) -> None:
    """The report's 820-byte GraphDef declared [None, 4600, 4600, 3]; 12 tiny PNGs with it
    took 1.4 GB of the frontend."""
    client = app.test_client()
    answer, peak = _peak_mb(lambda: _upload(client, fake_model(size=4600), 12))
    assert answer.status_code == 422, answer.json
    assert answer.json["error"]["code"] == "model_input_too_large"
    assert "4600x4600" in answer.json["error"]["message"]
    assert peak < 30, f"{peak:.0f} MB"
    registered = client.post(
        "/api/v1/models",
        data={
            "model": (io.BytesIO(fake_model(size=4600, tag="r")), "m.tflite"),
            "labels": (io.BytesIO(LABELS), "l.txt"),
        },
        content_type="multipart/form-data",
    )
    assert registered.status_code == 422
    assert registered.json["error"]["code"] == "model_input_too_large"


@pytest.mark.parametrize("path", ["/api/v1/classify", "/api/v1/explain"])
def test_images_at_a_large_input_are_counted_before_they_are_decoded(app: Flask, path: str) -> None:
    """Within the side limit, the memory of a call's images at the model's size is checked
    against a frame's (MAX_PIXEL_BYTES) before any is decoded; an explanation counts its
    1 + grid² classifications."""
    client = app.test_client()
    images = 12 if path.endswith("classify") else 1
    answer, peak = _peak_mb(lambda: _upload(client, fake_model(size=1500), images, path))
    assert answer.status_code == 413, answer.json
    assert answer.json["error"]["code"] == "too_many_pixels"
    assert "1500x1500" in answer.json["error"]["message"]
    assert peak < 30, f"{peak:.0f} MB"
    # and a call that fits is answered
    fits = _upload(client, fake_model(size=1500), 2)
    assert fits.status_code == 200, fits.json


def test_calibration_memory_stays_bounded_whatever_sizes_are_asked(app: Flask) -> None:
    """30 ad-hoc uploads of a float model at varied input sizes took the frontend from 135 to
    1210 MB, for good. Each size's photos are prepared for the range search; the cache keeps
    64 MiB of them at most."""
    client = app.test_client()
    sizes = [720, 940]  # 37 and 64 MB of photos: one fits in the cache at a time
    for size in sizes:
        answer = _upload(client, fake_model(size=size, dtype="float32", tag=str(size)), 1)
        assert answer.status_code == 200, answer.json
    cache = normalization._prepared  # the range was searched at each size: photos prepared
    assert 1 <= len(cache) < len(sizes) and cache.cost <= 64 << 20, (len(cache), cache.cost)


def _webp(side: int) -> bytes:
    """A lossless WebP of one colour: a few hundred bytes that decode to side² pixels."""
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), (90, 140, 200)).save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()


def test_a_call_of_tiny_lossless_webps_is_refused_before_any_decoding(app: Flask) -> None:
    """64 lossless WebPs of 1 KB at 25 MP each cost 31.5 s of frontend CPU: the pixels they
    decode to are summed from their headers first."""
    webp = _webp(5000)
    assert len(webp) < 2000
    client = app.test_client()
    started = time.monotonic()
    answer = client.post(
        "/api/v1/classify",
        data={"images": [(io.BytesIO(webp), f"{i}.webp") for i in range(16)]},
        content_type="multipart/form-data",
    )
    assert answer.status_code == 413, answer.json
    assert answer.json["error"]["code"] == "too_many_decoded_pixels"
    assert "DECODE_PIXELS_PER_CALL" in answer.json["error"]["message"]
    assert time.monotonic() - started < 2  # one 25 MP decode alone takes about half a second


class HeldTransport(FakeTransport):
    """Fake workers whose frames, while `holding` is set, wait for `release` (and say so by
    setting `entered`): a call held in flight."""

    def __init__(self) -> None:
        super().__init__()
        self.holding = False
        self.entered, self.release = threading.Event(), threading.Event()

    def exchange(self, request, batchable=False):
        if self.holding:
            self.entered.set()
            self.release.wait(10)
        return super().exchange(request, batchable)


def _holding_app(tmp_path: Path, **config: object) -> tuple[Flask, HeldTransport]:
    app, _ = fake_app(tmp_path, MODELS, **config)
    plane = app.extensions["mobilenet"]
    plane.transport = plane.runner.transport = held = HeldTransport()
    return app, held


def test_one_client_cannot_keep_everyone_elses_decoding_waiting(tmp_path: Path) -> None:
    """While one client's call decodes its budget, its next call is refused at once (429, with
    Retry-After) and another client is served."""
    app, held = _holding_app(tmp_path, DECODE_PIXELS_PER_CLIENT=1_000_000)
    entered, release = held.entered, held.release
    photo = _png((600, 600))  # 0.36 MP each

    def classify(address: str, images: int):
        return app.test_client().post(
            "/api/v1/classify",
            data={"images": [(io.BytesIO(photo), f"{i}.png") for i in range(images)]},
            content_type="multipart/form-data",
            environ_base={"REMOTE_ADDR": address},
        )

    assert classify("10.0.0.3", 1).status_code == 200  # the default model registered, warm
    held.holding = True
    first: list = []
    holder = threading.Thread(target=lambda: first.append(classify("10.0.0.1", 2)))
    holder.start()
    try:
        assert entered.wait(10)
        held.holding = False
        again = classify("10.0.0.1", 1)
        assert again.status_code == 429 and again.headers["Retry-After"] == "1"
        assert again.json["error"]["code"] == "too_many_decodes"
        assert classify("10.0.0.2", 1).status_code == 200
    finally:
        release.set()
        holder.join(10)
    assert first[0].status_code == 200
    assert classify("10.0.0.1", 1).status_code == 200  # its budget is back


def test_one_clients_explanations_cannot_queue_everyone_behind_them(tmp_path: Path) -> None:
    """Eight explanation loops from one address took a victim's latency from 0.03 s to 16 s.
    An explanation counts 1 + grid² classifications against the client's WORK_PER_CLIENT:
    while one runs, the same client's next is refused at once, and another client is served."""
    app, held = _holding_app(tmp_path, WORK_PER_CLIENT=60)
    entered, release = held.entered, held.release
    cat = (IMAGES / "cat.jpg").read_bytes()

    def call(path: str, address: str, **fields):
        return app.test_client().post(
            path,
            data={"image": (io.BytesIO(cat), "cat.jpg"), **fields},
            content_type="multipart/form-data",
            environ_base={"REMOTE_ADDR": address},
        )

    assert call("/api/v1/classify", "10.0.0.3").status_code == 200  # warm
    held.holding = True
    first: list = []
    loop = threading.Thread(
        target=lambda: first.append(call("/api/v1/explain", "10.0.0.1", grid="7"))
    )
    loop.start()
    try:
        assert entered.wait(10)
        held.holding = False
        again = call("/api/v1/explain", "10.0.0.1", grid="7")
        assert again.status_code == 429 and again.headers["Retry-After"] == "1"
        assert again.json["error"]["code"] == "too_much_work"
        assert "50 classifications" in again.json["error"]["message"]
        assert call("/api/v1/classify", "10.0.0.2").status_code == 200
    finally:
        release.set()
        loop.join(10)
    assert first[0].status_code == 200, first[0].json


def test_one_client_fills_its_share_of_the_store_not_the_store(tmp_path: Path) -> None:
    """One address filled the whole store with three registrations in 6 s and the next client
    got 507 store_full; now the first fills its share and the next registers."""
    app, _ = fake_app(
        tmp_path, MODELS, REGISTRATIONS_PER_HOUR=1000, STORE_SHARE_MODELS=2,
        STORE_MAX_MODELS=10,
    )  # fmt: skip

    def register(address: str, tag: str):
        return app.test_client().post(
            "/api/v1/models",
            data={
                "model": (io.BytesIO(fake_model(tag=tag)), "m.tflite"),
                "labels": (io.BytesIO(LABELS), "l.txt"),
            },
            content_type="multipart/form-data",
            environ_base={"REMOTE_ADDR": address},
        )

    assert [register("203.0.113.9", tag).status_code for tag in "ab"] == [201, 201]
    refused = register("203.0.113.9", "c")
    assert refused.status_code == 507, refused.json
    assert refused.json["error"]["code"] == "store_share_full"
    assert "STORE_SHARE_MODELS" in refused.json["error"]["message"]
    assert register("198.51.100.7", "d").status_code == 201
    listed = app.test_client().get("/api/v1/models").get_data(as_text=True)
    assert "203.0.113.9" not in listed  # who registered is kept, never answered


def test_a_browser_under_another_sites_name_is_refused(tmp_path: Path) -> None:
    """DNS rebinding: the attacker's name now resolves to this service, so its page's Origin
    and the Host header agree and the cross-site check passed. A browser's request under a
    name the service does not have is refused; addresses, localhost, ALLOWED_HOSTS and
    clients that are not browsers pass."""
    app, _ = fake_app(tmp_path, MODELS, ALLOWED_HOSTS="classify.example.org")
    client = app.test_client()
    rebound = {"Host": "attacker.example:8080", "Origin": "http://attacker.example:8080"}
    for method in (client.get, client.delete):
        answer = method("/api/v1/models", headers={**rebound, "Sec-Fetch-Site": "same-origin"})
        assert answer.status_code == 421, answer.json
        assert answer.json["error"]["code"] == "host_not_allowed"
        assert "ALLOWED_HOSTS" in answer.json["error"]["message"]
    assert (
        client.get("/", headers={"Host": "attacker.example", "Sec-Fetch-Site": "none"}).status_code
        == 421
    )
    for host in ("127.0.0.1:8080", "[::1]:8080", "localhost:8080", "classify.example.org"):
        answer = client.get("/api/v1/models", headers={"Host": host, "Sec-Fetch-Site": "none"})
        assert answer.status_code == 200, (host, answer.json)
    assert client.get("/api/v1/models", headers={"Host": "attacker.example"}).status_code == 200


def test_one_clients_heavy_uploads_cannot_put_another_behind_both(tmp_path: Path) -> None:
    """Two heavy uploads of one client (its cap is 2; the upload lane has one worker) once left
    a victim behind both, with 503s. Turns at the lane go to whoever waited without one first:
    the victim's model runs right after the frame in flight, before the client's second."""
    app, held = _holding_app(tmp_path, REGISTRATIONS_PER_HOUR=1000, UPLOAD_POOL_SIZE=1)
    plane = app.extensions["mobilenet"]

    def register(address: str, tag: str) -> str:
        answer = app.test_client().post(
            "/api/v1/models",
            data={"model": (io.BytesIO(fake_model(tag=tag)), "m.tflite"),
                  "labels": (io.BytesIO(LABELS), "l.txt")},
            content_type="multipart/form-data",
            environ_base={"REMOTE_ADDR": address},
        )  # fmt: skip
        assert answer.status_code == 201, answer.json
        return answer.json["id"]

    heavy, victims = register("10.0.0.1", "heavy"), register("10.0.0.2", "victim's")
    done: list[str] = []

    def classify(address: str, model_id: str) -> None:
        answer = app.test_client().post(
            f"/api/v1/models/{model_id}/classify",
            data={"image": (io.BytesIO(_png()), "p.png")},
            content_type="multipart/form-data",
            environ_base={"REMOTE_ADDR": address},
        )
        assert answer.status_code == 200, answer.json
        done.append(address)

    held.holding = True
    first = threading.Thread(target=classify, args=("10.0.0.1", heavy))
    first.start()
    assert held.entered.wait(10)
    held.holding = False
    others = [threading.Thread(target=classify, args=args)
              for args in (("10.0.0.1", heavy), ("10.0.0.2", victims))]  # fmt: skip
    for thread in others:
        thread.start()
        deadline = time.monotonic() + 10
        while len(plane.admission.upload_turns._waiting) < others.index(thread) + 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
    held.release.set()
    for thread in (first, *others):
        thread.join(10)
    assert done == ["10.0.0.1", "10.0.0.2", "10.0.0.1"]
