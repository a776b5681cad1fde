"""The data plane: what every route needs, behind one object, in the manner of MLServer's
`DataPlane` and KServe's V2 endpoints. The page, /api/v1, /v2, /v1/models, /infer and the CLI
are thin views over it: they parse a request, make one call here, and encode the answer.

Under it: the catalog (models by id or name, kept ready to send), admission (what a client may
ask before anything runs for it), the runner (the only code that builds frames and talks to
workers) and preparation (probing, profiles, ranges, registration).

    images → frontend/images.py (decode, crop, resize as the model's profile says)
           → runner (one frame per run of neighbouring images, side by side)
           → frontend/labels.py and frontend/answers.py (labels lined up, top k)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from frontend.answers import Classification, Result, top_predictions
from frontend.dataplane.admission import Admission
from frontend.dataplane.catalog import DEFAULT_ALIAS, Catalog
from frontend.dataplane.fairness import upload_turns
from frontend.dataplane.manifest import registration_id
from frontend.dataplane.models import ModelSource, uploaded_model
from frontend.dataplane.preparation import Registered, check_upload, prepare, register
from frontend.dataplane.runner import Runner
from frontend.dataplane.statistics import Tally, recorded
from frontend.errors import DefaultModelMissing, ModelIsDefault, ModelNotFound
from frontend.explain import OcclusionMap, occlusion_map
from frontend.images import decoded_pixels, prepare_image
from frontend.labels import Labels
from frontend.settings import Settings
from frontend.store import ModelStore, Quota, StoredModel
from protocol import Normalization, SandboxUnavailable, ServiceError, describe_request
from protocol.lru import LRU
from supervisor import tracing
from supervisor.config import pool_size
from supervisor.metrics import STAGE_LATENCY
from supervisor.transport import Transport

logger = logging.getLogger("gunicorn.error")
MODEL_VERSION = "1"  # a registration never changes: each model has one version
REGISTRATION_LOG = ".registrations.sqlite3"  # in the store: shared by every process
PREPARED_UPLOADS = 4  # uploads used once, kept prepared for the next request that sends them


class RecentCheck:
    """The answer of a check run at most `interval` seconds ago: one check at a time, the other
    callers wait for it and share its answer."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._at = float("-inf")
        self._answer: Any = None

    def answer(self, check: Callable[[], Any]) -> tuple[Any, float]:
        """The answer and its age in seconds."""
        with self._lock:
            if time.monotonic() - self._at >= self.interval:
                self._answer = check()
                self._at = time.monotonic()
            return self._answer, time.monotonic() - self._at


class DataPlane:
    def __init__(self, settings: Settings, transport: Transport) -> None:
        self.settings = settings
        self.transport = transport
        self.catalog = Catalog(
            ModelStore(
                Path(settings.model_store),
                Quota(settings.store_max_models, settings.store_max_bytes),
                Quota(settings.store_share_models, settings.store_share_bytes),
            )
        )
        self.admission = Admission(
            settings.registrations_per_hour,
            settings.uploads_per_client,
            settings.max_images_per_call,
            Path(settings.model_store) / REGISTRATION_LOG,
            (settings.decode_pixels_per_call, settings.decode_pixels_per_client),
            settings.work_per_client,
            upload_turns(settings),
        )
        self.runner = Runner(
            transport, ThreadPoolExecutor(pool_size(settings), thread_name_prefix="image-runs")
        )
        self.readiness = RecentCheck(settings.ready_check_seconds)
        self._default_lock = threading.Lock()
        self._default: StoredModel | None = None  # it cannot be deleted, so it is kept
        self._uploads: LRU[str, ModelSource] = LRU(max_items=PREPARED_UPLOADS)

    # --- models ------------------------------------------------------------------------------

    def default_model(self) -> StoredModel:
        """The default model from MODEL_DIR, registered in the store by the first call in each
        process, and rebuilt there from MODEL_DIR if the store holds anything else under its
        id (its name, say): what the store held before never decides what the default is."""
        with self._default_lock:
            if self._default is None:
                self._default = _register_default(self.settings, self.catalog, self.runner)
            return self._default

    def is_default(self, model_id: str) -> bool:
        try:
            return self.default_model().id == model_id
        except DefaultModelMissing:
            return False

    def model(self, key: str, version: str | None = None) -> ModelSource:
        """A model to run, by id or name (`default` and the default model's name are the
        default), as every route and the CLI name models. A `version` other than
        MODEL_VERSION is not found (the Open Inference Protocol and TF Serving ask)."""
        if version is not None and version != MODEL_VERSION:
            raise ModelNotFound(f"model {key!r} has only version {MODEL_VERSION}, not {version!r}")
        default = _default_or_none(self)
        if default is not None and key in (DEFAULT_ALIAS, default.manifest["name"]):
            return self.catalog.source(default, "default")
        if key == DEFAULT_ALIAS:
            self.default_model()  # raises DefaultModelMissing
        return self.catalog.source(self.catalog.find(key), "registered")

    def requested(self, upload: ModelSource | None, key: str | None, client: str) -> ModelSource:
        """What a classifying request asks for: an upload used once (the stored entry when it
        is registered with exactly these labels and options, else prepared as a registration
        is and kept in memory), a stored model by id or name, or the default."""
        if upload is None:
            return self.model(key or DEFAULT_ALIAS)
        check_upload(upload.blob, self.settings.max_model_bytes)
        self._untrusted(upload.sha256)
        model_id = registration_id(upload.sha256, upload.label_lines, upload.options)
        known = self.catalog.store.get(model_id)
        if known is not None:
            return self.catalog.source(known, "registered")
        prepared = self._uploads.get(model_id)
        if prepared is None:
            with self.admission.running(client):
                described, blob, sha256 = prepare(
                    self.runner, upload, self.settings.max_model_bytes
                )
            prepared = ModelSource(
                name=upload.name, blob=blob, sha256=sha256, label_lines=upload.label_lines,
                origin="upload", options=upload.options, described=described,
            )  # fmt: skip
            prepared.labels(prepared.classes)  # labels that do not line up: refused now
            self._uploads.put(model_id, prepared)
        return prepared

    def register(
        self, upload: ModelSource, labels: bytes, name: str | None, filename: str, client: str
    ) -> Registered:
        """Register `upload` (frontend/dataplane/preparation.py) for `client`."""
        self._untrusted(upload.sha256)
        self.admission.registration(client)
        with self.admission.running(client):
            return register(
                self.catalog, self.runner, upload, labels, name, filename,
                self.settings.max_model_bytes, owner=client,
            )  # fmt: skip

    def rename(self, key: str, name: str) -> tuple[StoredModel, str]:
        """The model renamed (frontend/dataplane/catalog.py), and its old name."""
        if self.is_default(self.model(key).id or ""):
            raise ModelIsDefault("the default model cannot be renamed")
        return self.catalog.rename(key, name)

    def delete(self, key: str) -> str:
        """Delete a model by id or name; its id."""
        model_id = self.model(key).id or ""
        if self.is_default(model_id):
            raise ModelIsDefault("the default model cannot be deleted")
        self.catalog.forget(model_id)
        if not self.catalog.store.delete(model_id):
            raise ModelNotFound(f"no model with id {model_id!r}")
        return model_id

    def _untrusted(self, sha256: str) -> None:
        """Models other than the default are untrusted: they run only inside the sandbox."""
        if runs_untrusted_models(self):
            return
        default = _default_or_none(self)
        if default is not None and sha256 == default.manifest["sha256"]:
            return
        raise SandboxUnavailable(
            "this server runs only its default model: workers have no sandbox "
            "(install bubblewrap, or set ALLOW_UNSANDBOXED_MODELS=1 to accept the risk)"
        )

    # --- running -----------------------------------------------------------------------------

    def classify(
        self,
        images: list[bytes],
        model: ModelSource,
        top_k: int,
        client: str,
        normalization: Normalization | None = None,
    ) -> list[Result]:
        """One result per image, in order; an image that cannot be read fails alone. The
        images are cut into runs of neighbours, one per worker of the model's lane, each
        decoded and sent as one frame at the same time."""
        self.admission.count(len(images))
        size = model.size(self.settings.input_size)
        self.admission.pixels(len(images), size)
        limit = self.settings.max_image_pixels
        cost = sum(decoded_pixels(image, size, model.profile, limit) for image in images)
        with (
            self.admission.decoding(client, cost),
            self._running(model, client, len(images)) as tally,
        ):
            runs = self.runner.side_by_side(
                lambda run: _decode_and_run(self.runner, self.settings, run, model, top_k,
                                            normalization),
                images,
                _lane_size(self.settings, model),
            )  # fmt: skip
            results = [result for run in runs for result in run]
            tally.images = sum(not isinstance(r, ServiceError) for r in results)
        return results

    def classify_pixels(
        self, pixels: np.ndarray, model: ModelSource, top_k: int, client: str
    ) -> list[Classification]:
        """Images already prepared at the model's size: [n, h, w, 3] uint8."""
        self.admission.count(len(pixels))
        started = time.perf_counter()
        with self._running(model, client, len(pixels)):
            rows = self.runner.run_side_by_side(model, pixels, _lane_size(self.settings, model))
        worker_ms = _ms(started)
        STAGE_LATENCY["worker"].observe(worker_ms / 1000)
        labels = model.labels(rows.shape[1])
        timings = {"decode": 0.0, "worker": worker_ms, "total": worker_ms}
        return [
            Classification(model, labels, top_predictions(row, labels, top_k), dict(timings), row)
            for row in rows
        ]

    def explain(
        self,
        image: bytes,
        model: ModelSource,
        label: str | None,
        grid: int,
        client: str,
        normalization: Normalization | None = None,
    ) -> tuple[OcclusionMap, np.ndarray, Labels]:
        """The occlusion map of `label` (a label or a class number; None: the top label) on
        the photo, the photo as prepared for the model, and the model's labels. It costs
        1 + grid² classifications, within MAX_IMAGES_PER_CALL."""
        what = f"an explanation on a {grid}x{grid} grid"
        self.admission.count(1 + grid * grid, what)
        size = model.size(self.settings.input_size)
        self.admission.pixels(1 + grid * grid, size, what)
        pixels = prepare_image(image, size, self.settings.max_image_pixels, model.profile)
        labels = model.labels(model.classes)
        index = None if label is None else labels.index_of(label)
        parts = _lane_size(self.settings, model)

        def classify(batch: np.ndarray) -> np.ndarray:
            return self.runner.run_side_by_side(model, batch, parts, normalization)

        with self._running(model, client, 1 + grid * grid):
            return occlusion_map(pixels, classify, index, grid), pixels, labels

    @contextmanager
    def _running(self, model: ModelSource, client: str, images: int) -> Iterator[Tally]:
        """Every call counts against the client's WORK_PER_CLIENT while it runs, and in its
        model's statistics; models other than the default run only in the sandbox, and count
        against the client's UPLOADS_PER_CLIENT too."""
        default = _default_or_none(self)
        trusted = model.origin == "default" or (
            default is not None and default.manifest["sha256"] == model.sha256
        )
        if not trusted:
            self._untrusted(model.sha256)
        admitted = nullcontext() if trusted else self.admission.running(client)
        working = self.admission.working(client, images)
        with working, admitted, recorded(model.id, images) as tally:
            yield tally

    # --- lifetime ----------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Start the pool's workers and load the default model into each, in the background."""

        def run() -> None:
            try:
                default = self.catalog.source(self.default_model(), "default")
                self.transport.preload(describe_request(default.blob, default.sha256))
            except ServiceError as exc:
                logger.warning("warm-up failed: %s: %s", exc.code, exc.message)

        threading.Thread(target=run, name="pool-warm-up", daemon=True).start()

    def close(self) -> None:
        self.transport.close()


def runs_untrusted_models(plane: DataPlane) -> bool:
    """Whether models other than the default can run: in the sandbox, or without it when
    ALLOW_UNSANDBOXED_MODELS says so."""
    return plane.transport.sandboxed or plane.settings.allow_unsandboxed_models


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 2)


def _register_default(settings: Settings, catalog: Catalog, runner: Runner) -> StoredModel:
    """Register the default model from MODEL_DIR, whatever the store held under its id."""
    folder = Path(settings.model_dir)
    model_path, labels_path = folder / settings.default_model, folder / settings.default_labels
    if not (model_path.is_file() and labels_path.is_file()):
        raise DefaultModelMissing(
            f"the default model {model_path.name} or its labels are not in {folder}: "
            "run `make models`"
        )
    labels = labels_path.read_bytes()
    model = uploaded_model(model_path.name, model_path.read_bytes(), labels)
    # Ours: it never runs beside uploads, not even for its own registration probe.
    runner.transport.trust(model.sha256)
    registered = register(
        catalog, runner, model, labels, model_path.name, model_path.name,
        settings.max_model_bytes, replace=True,
    )  # fmt: skip
    return registered.stored


def _lane_size(settings: Settings, model: ModelSource) -> int:
    """How many runs to cut many images into: as many as the model's lane has workers (the
    pool's for the default model, the upload lane's for the others)."""
    return pool_size(settings) if model.origin == "default" else settings.upload_pool_size


def _decode_and_run(
    runner: Runner,
    settings: Settings,
    images: list[bytes],
    model: ModelSource,
    top_k: int,
    normalization: Normalization | None,
) -> list[Result]:
    """The images of one run that decode, in one frame; each one that does not, its error."""
    started = time.perf_counter()
    size = model.size(settings.input_size)
    prepared: list[np.ndarray | ServiceError] = []
    decode_ms = []
    with tracing.span("decode", images=len(images)):
        for image in images:
            begun = time.perf_counter()
            try:
                prepared.append(
                    prepare_image(image, size, settings.max_image_pixels, model.profile)
                )
            except ServiceError as exc:
                prepared.append(exc)
            decode_ms.append(_ms(begun))
    good = [p for p in prepared if isinstance(p, np.ndarray)]
    if not good:
        return prepared  # type: ignore[return-value]
    before = time.perf_counter()
    with tracing.span("model", model=model.id or "upload", images=len(good)):
        rows = runner.run(
            model, good[0][np.newaxis] if len(good) == 1 else np.stack(good), normalization
        )
    worker_ms = _ms(before)
    STAGE_LATENCY["worker"].observe(worker_ms / 1000)
    labels = model.labels(rows.shape[1])
    results: list[Result] = []
    good_rows = iter(rows)
    for item, decoded in zip(prepared, decode_ms, strict=True):
        if isinstance(item, ServiceError):
            results.append(item)
            continue
        STAGE_LATENCY["decode"].observe(decoded / 1000)
        row = next(good_rows)
        timings = {"decode": decoded, "worker": worker_ms, "total": _ms(started)}
        STAGE_LATENCY["total"].observe(timings["total"] / 1000)
        results.append(
            Classification(model, labels, top_predictions(row, labels, top_k), timings, row)
        )
    return results


def _default_or_none(plane: DataPlane) -> StoredModel | None:
    try:
        return plane.default_model()
    except DefaultModelMissing:
        return None
