"""The per-app service object: settings, the model store, the default model and the worker
transport, created once by the application factory."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter, OrderedDict, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
from flask import Flask, current_app

from frontend.catalog import DEFAULT_ALIAS, Catalog
from frontend.classify import (
    Classification,
    ImageOptions,
    classify_image,
    classify_images,
    classify_pixels,
    run_side_by_side,
)
from frontend.errors import (
    DefaultModelMissing,
    ModelIsDefault,
    ModelNotFound,
    TooManyImages,
    TooManyRegistrations,
    TooManyUploads,
)
from frontend.explain import OcclusionMap, occlusion_map
from frontend.images import prepare_image, set_large_decodes
from frontend.labels import Labels
from frontend.models import ModelSource, default_files, from_manifest, from_stored
from frontend.registry import (
    Registered,
    check_upload,
    describe_request,
    prepare,
    register,
    registration_id,
)
from frontend.store import ModelStore, StoredModel
from frontend.workers import make_transport
from protocol import Normalization, SandboxUnavailable, ServiceError
from supervisor.config import pool_size
from supervisor.transport import Transport

current_logger = logging.getLogger("gunicorn.error")
SOURCE_CACHE_SIZE = 8
MODEL_VERSION = "1"  # a registration never changes: each model has one version
PREPARED_CACHE_SIZE = 4


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


class Service:
    def __init__(self, config: dict[str, Any], transport: Transport | None = None) -> None:
        self.config = config
        self.store = ModelStore(
            Path(config["MODEL_STORE"]), config["STORE_MAX_MODELS"], config["STORE_MAX_BYTES"]
        )
        self.catalog = Catalog(self.store)
        self.transport = transport or make_transport(config)
        self._default_lock = threading.Lock()
        self._default: StoredModel | None = None  # it cannot be deleted, so it is kept
        # Stored models as ready-to-send sources (bytes and labels in memory), most recent last.
        self._sources: OrderedDict[str, ModelSource] = OrderedDict()
        # Unregistered uploads as prepared, by the id their registration would have.
        self._uploads_prepared: OrderedDict[str, ModelSource] = OrderedDict()
        self._sources_lock = threading.Lock()
        self._uploads: Counter[str] = Counter()  # models other than the default running, by client
        self._uploads_lock = threading.Lock()
        self._registrations: defaultdict[str, deque[float]] = defaultdict(deque)
        self.readiness = RecentCheck(config["READY_CHECK_SECONDS"])
        # Runs of the images of one call, sent to the pool's workers side by side.
        self._runs = ThreadPoolExecutor(pool_size(config), thread_name_prefix="image-runs")

    # --- models ----------------------------------------------------------------------------

    def default_model(self) -> StoredModel:
        """The default model from MODEL_DIR, registered in the store by the first call in each
        process, and rebuilt there from MODEL_DIR if the store holds anything else under its
        id (its name, say): what the store held before never decides what the default is."""
        with self._default_lock:
            if self._default is not None:
                return self._default
            model_path, labels_path = default_files(self.config)
            if not (model_path.is_file() and labels_path.is_file()):
                raise DefaultModelMissing(
                    f"the default model {model_path.name} or its labels are not in "
                    f"{model_path.parent}: run `make models`"
                )
            blob = model_path.read_bytes()
            sha256 = hashlib.sha256(blob).hexdigest()
            # Ours: it never runs beside uploads, not even for its own registration probe.
            self.transport.trust(sha256)
            # Ours, not an upload: registered without the sandbox check.
            registered = self._register(
                blob, labels_path.read_bytes(), name=model_path.name, replace=True
            )
            self._default = registered.stored
            return registered.stored

    def _default_sha256(self) -> str | None:
        try:
            return self.default_model().manifest["sha256"]
        except DefaultModelMissing:
            return None

    def is_default(self, model_id: str) -> bool:
        try:
            return self.default_model().id == model_id
        except DefaultModelMissing:
            return False

    def _require_sandbox(self, model_sha256: str) -> None:
        """Models other than the default are untrusted: they run only inside the sandbox."""
        if self.transport.sandboxed or self.config["ALLOW_UNSANDBOXED_MODELS"]:
            return
        if model_sha256 == self._default_sha256():
            return
        raise SandboxUnavailable(
            "this server runs only its default model: workers have no sandbox "
            "(install bubblewrap, or set ALLOW_UNSANDBOXED_MODELS=1 to accept the risk)"
        )

    def register(self, blob: bytes, labels: bytes, client: str = "", **options: Any) -> Registered:
        """`options`: name (None: one made of `filename`), filename, input_tensor,
        output_tensor, normalization, input_size (frontend/registry.py)."""
        self._require_sandbox(hashlib.sha256(blob).hexdigest())
        self._count_registration(client)
        with self._upload_slot(client):
            return self._register(blob, labels, **options)

    def _count_registration(self, client: str) -> None:
        """At most REGISTRATIONS_PER_HOUR registration requests per client address and hour
        (in this gunicorn process): padding a model gives a new one, each probed and stored."""
        limit, now = self.config["REGISTRATIONS_PER_HOUR"], time.monotonic()
        with self._uploads_lock:
            recent = self._registrations[client]
            while recent and recent[0] <= now - 3600:
                recent.popleft()
            if len(recent) >= limit:
                wait = 3600 - (now - recent[0])
                raise TooManyRegistrations(
                    f"{limit} registrations from this client within the hour "
                    f"(REGISTRATIONS_PER_HOUR); the next one in {wait:.0f} s"
                )
            recent.append(now)

    @contextmanager
    def _upload_slot(self, client: str) -> Iterator[None]:
        """At most UPLOADS_PER_CLIENT models other than the default run for one client at once
        (in this gunicorn process): one client cannot queue up the upload workers for all."""
        limit = self.config["UPLOADS_PER_CLIENT"]
        with self._uploads_lock:
            if self._uploads[client] >= limit:
                raise TooManyUploads(
                    f"{limit} of this client's uploaded or registered models are already "
                    "running; wait for one to finish (UPLOADS_PER_CLIENT)"
                )
            self._uploads[client] += 1
        try:
            yield
        finally:
            with self._uploads_lock:
                self._uploads[client] -= 1
                if not self._uploads[client]:
                    del self._uploads[client]

    def _register(self, blob: bytes, labels: bytes, **options: Any) -> Registered:
        return register(
            self.catalog,
            self.transport,
            blob,
            labels,
            max_bytes=self.config["MAX_MODEL_BYTES"],
            **options,
        )

    def stored(self, key: str) -> StoredModel:
        """A stored model by id or name; `default` is the default model."""
        return self.default_model() if self._is_default_key(key) else self.catalog.find(key)

    def _is_default_key(self, key: str) -> bool:
        if key == DEFAULT_ALIAS:
            return True
        try:
            return key == self.default_model().manifest["name"]
        except DefaultModelMissing:
            return False

    def rename(self, key: str, name: str) -> tuple[StoredModel, str]:
        """The model renamed (frontend/catalog.py), and its old name."""
        if self.is_default(self.stored(key).id):
            raise ModelIsDefault("the default model cannot be renamed")
        return self.catalog.rename(key, name)

    def delete(self, key: str) -> str:
        """Delete a model by id or name; its id."""
        stored = self.stored(key)
        if self.is_default(stored.id):
            raise ModelIsDefault("the default model cannot be deleted")
        with self._sources_lock:
            self._sources.pop(stored.id, None)
        if not self.store.delete(stored.id):
            raise ModelNotFound(f"no model with id {stored.id!r}")
        return stored.id

    def _source(self, stored: StoredModel, origin: str) -> ModelSource:
        with self._sources_lock:
            source = self._sources.get(stored.id)
            if source is not None and source.origin == origin:
                self._sources.move_to_end(stored.id)
                return source
        source = from_stored(stored, origin)
        with self._sources_lock:
            self._sources[stored.id] = source
            while len(self._sources) > SOURCE_CACHE_SIZE:
                self._sources.popitem(last=False)
        return source

    def resolve(
        self,
        upload: ModelSource | None,
        model_id: str | None,
        normalization: Normalization | None = None,
        input_size: tuple[int, int] | None = None,
        client: str = "",
        preprocessing: str | None = None,
    ) -> ModelSource:
        """What to run: an upload (the stored entry when it is registered with exactly these
        labels and options, else prepared as a registration is, frontend/registry.py, and kept
        in memory), a stored model by id or name, or the default."""
        if upload is not None:
            check_upload(upload.blob, self.config["MAX_MODEL_BYTES"])
            self._require_sandbox(upload.sha256)
            normalization = normalization or Normalization()
            key = registration_id(
                upload.sha256, upload.label_lines, None, None, normalization, input_size,
                preprocessing,
            )  # fmt: skip
            known = self.store.get(key)
            if known is not None:
                return self._source(known, "registered")
            return self._prepared(upload, key, normalization, input_size, client, preprocessing)
        return self.model(model_id or DEFAULT_ALIAS)

    def _prepared(
        self,
        upload: ModelSource,
        key: str,
        normalization: Normalization,
        input_size: tuple[int, int] | None,
        client: str,
        preprocessing: str | None,
    ) -> ModelSource:
        """An unregistered upload, prepared once (its size, normalisation, a Keras file's
        conversion: several runs of the model) and kept for the next request that sends it."""
        with self._sources_lock:
            source = self._uploads_prepared.get(key)
            if source is not None:
                self._uploads_prepared.move_to_end(key)
                return source
        with self._upload_slot(client):
            description, blob = prepare(
                self.transport,
                upload,
                normalization,
                input_size,
                self.config["MAX_MODEL_BYTES"],
                preprocessing,
            )
        sha256 = hashlib.sha256(blob).hexdigest()
        manifest = {"id": None, "name": upload.name, "sha256": sha256, **description}
        source = from_manifest(manifest, blob, upload.label_lines, "upload")
        source.labels(source.classes)  # labels that do not line up: refused before it runs
        with self._sources_lock:
            self._uploads_prepared[key] = source
            while len(self._uploads_prepared) > PREPARED_CACHE_SIZE:
                self._uploads_prepared.popitem(last=False)
        return source

    def warm_up(self) -> None:
        """Start the pool's workers and load the default model into each, in the background."""

        def run() -> None:
            try:
                self.transport.preload(
                    describe_request(self._source(self.default_model(), "default"))
                )
            except ServiceError as exc:
                current_logger.warning("warm-up failed: %s: %s", exc.code, exc.message)

        threading.Thread(target=run, name="pool-warm-up", daemon=True).start()

    # --- classification --------------------------------------------------------------------

    def model(self, key: str, version: str | None = None) -> ModelSource:
        """A model to run, by id or name (`default` and the default model's name are the
        default), as every route and the CLI name models. A `version` other than
        MODEL_VERSION is not found (the Open Inference Protocol and TF Serving ask)."""
        if version is not None and version != MODEL_VERSION:
            raise ModelNotFound(f"model {key!r} has only version {MODEL_VERSION}, not {version!r}")
        if self._is_default_key(key):
            return self._source(self.default_model(), "default")
        stored = self.catalog.find(key)
        self._require_sandbox(stored.manifest["sha256"])
        return self._source(stored, "registered")

    def _running(self, model: ModelSource, client: str) -> Any:
        """Models other than the default count against the client's UPLOADS_PER_CLIENT while
        they run."""
        return nullcontext() if self._trusted(model) else self._upload_slot(client)

    def _trusted(self, model: ModelSource) -> bool:
        return model.origin == "default" or self._default_sha256() == model.sha256

    def check_count(self, count: int, what: str = "one call") -> None:
        """At most MAX_IMAGES_PER_CALL images (or classifications) in one call."""
        limit = self.config["MAX_IMAGES_PER_CALL"]
        if count > limit:
            raise TooManyImages(
                f"{count} images in {what}, over the limit of {limit} (MAX_IMAGES_PER_CALL)"
            )

    def classify(
        self,
        image: bytes,
        model: ModelSource,
        normalization: Normalization,
        top_k: int,
        client: str = "",
    ) -> Classification:
        """`client` (the caller's address) counts against UPLOADS_PER_CLIENT unless the model
        is the default."""
        with self._running(model, client):
            return classify_image(image, model, self.transport, self._options(normalization, top_k))

    def classify_many(
        self,
        images: list[bytes],
        model: ModelSource,
        normalization: Normalization,
        top_k: int,
        client: str = "",
    ) -> list[Classification | ServiceError]:
        """One result per image, in order; a bad image fails its own entry."""
        self.check_count(len(images))
        with self._running(model, client):
            return classify_images(
                images,
                model,
                self.transport,
                self._options(normalization, top_k),
                executor=self._runs,
                parts=self._parts(model),
            )

    def _parts(self, model: ModelSource) -> int:
        """How many runs to cut many images into: as many as the model's lane has workers
        (the pool's for the default model, the upload lane's for the others)."""
        return pool_size(self.config) if self._trusted(model) else self.config["UPLOAD_POOL_SIZE"]

    def classify_pixels(
        self,
        pixels: Any,
        model: ModelSource,
        normalization: Normalization,
        top_k: int,
        client: str = "",
    ) -> list[Classification]:
        """Images already prepared at the model's size, uint8 [n, h, w, 3]."""
        self.check_count(len(pixels))
        with self._running(model, client):
            return classify_pixels(
                pixels,
                model,
                self.transport,
                normalization=normalization,
                top_k=top_k,
                executor=self._runs,
                parts=self._parts(model),
            )

    def explain(
        self,
        image: bytes,
        model: ModelSource,
        normalization: Normalization,
        label: str | None,
        grid: int,
        client: str = "",
    ) -> tuple[OcclusionMap, np.ndarray, Labels]:
        """The occlusion map of `label` (a label or a class number; None: the top label) on
        the photo, the photo as prepared for the model, and the model's labels. It costs
        1 + grid² classifications, within MAX_IMAGES_PER_CALL."""
        self.check_count(1 + grid * grid, f"an explanation on a {grid}x{grid} grid")
        size, max_pixels = model.size(self.config["INPUT_SIZE"]), self.config["MAX_IMAGE_PIXELS"]
        pixels = prepare_image(image, size, max_pixels, model.profile)
        labels = model.labels(model.classes)
        index = None if label is None else labels.index_of(label)

        def classify(batch: np.ndarray) -> np.ndarray:
            return run_side_by_side(
                batch, model, self.transport, normalization, self._runs, self._parts(model)
            )

        with self._running(model, client):
            return occlusion_map(pixels, classify, index, grid), pixels, labels

    def _options(self, normalization: Normalization, top_k: int) -> ImageOptions:
        return ImageOptions(
            self.config["INPUT_SIZE"], normalization, top_k, self.config["MAX_IMAGE_PIXELS"]
        )


def init_app(app: Flask, transport: Transport | None = None) -> None:
    set_large_decodes(app.config["LARGE_DECODES"])
    app.extensions["mobilenet"] = Service(app.config, transport)


def get_service() -> Service:
    return current_app.extensions["mobilenet"]
