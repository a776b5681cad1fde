"""The model store: a folder (MODEL_STORE) with one folder per registered model, named by its
registration id (frontend/dataplane/manifest.py: the model's bytes, labels and options
together), holding `model.bin`, `labels.txt`, `manifest.json` and `owner` (the client that
registered it, never answered to anyone).

Writes are atomic: a model is written into a hidden temporary folder, every file fsynced, then
the folder is renamed into place and the parent fsynced; a manifest is rewritten beside itself
and renamed over. A crash leaves either nothing or the whole model; hidden leftovers of a crash
are removed when the store opens. Quotas bound what it holds: at most `max_models` models and
`max_bytes` bytes of model files, and for each owner its share of those, so that one client
cannot fill the store for everyone. `locked()` serialises the changes whose checks read the whole
store (a name must be free when it is taken) across every process that opens it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frontend.errors import StoreFull, StoreShareFull, StoreUnavailable

MODEL_FILE, LABELS_FILE, MANIFEST_FILE = "model.bin", "labels.txt", "manifest.json"
OWNER_FILE = "owner"
PARTIAL_PREFIX = ".partial-"


@dataclass(frozen=True)
class StoredModel:
    folder: Path
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        return self.manifest["id"]

    def model_bytes(self) -> bytes:
        return (self.folder / MODEL_FILE).read_bytes()

    def labels_bytes(self) -> bytes:
        return (self.folder / LABELS_FILE).read_bytes()

    def owner(self) -> str | None:
        try:
            return (self.folder / OWNER_FILE).read_text()
        except OSError:
            return None


@dataclass(frozen=True)
class Quota:
    models: int
    bytes: int


def _write_synced(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_folder(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def is_model_id(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


UNLIMITED = Quota(1_000_000, 1 << 62)


def _within(
    quota: Quota,
    held: list[StoredModel],
    adding: int,
    error: type[StoreFull],
    what: str,
    prefix: str,
) -> None:
    """Refuse one more model of `adding` bytes past `quota` (named by its settings' `prefix`)."""
    used = sum(m.manifest.get("bytes", 0) for m in held)
    if len(held) + 1 > quota.models:
        raise error(
            f"{what} holds {len(held)} models, its limit ({prefix}_MODELS); delete one first"
        )
    if used + adding > quota.bytes:
        raise error(
            f"{what} holds {used} bytes of models; {adding} more would pass its limit of "
            f"{quota.bytes} ({prefix}_BYTES)"
        )


class ModelStore:
    def __init__(self, root: Path, quota: Quota = UNLIMITED, share: Quota = UNLIMITED) -> None:
        """`quota`: what the store holds at most; `share`: what it holds for one owner."""
        self.root = root
        self.quota = quota
        self.share = share
        try:
            root.mkdir(parents=True, exist_ok=True)
            for leftover in root.glob(PARTIAL_PREFIX + "*"):
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError as exc:
            raise StoreUnavailable(f"the model store {root} cannot be opened: {exc}") from None

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the store among every thread and process that asks for it: a lock
        on its folder (no file of its own, so a read-only or full store can still be read)."""
        try:
            folder = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise StoreUnavailable(f"the model store {self.root} cannot be opened: {exc}") from None
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            yield
        finally:
            os.close(folder)  # which releases the lock

    def generation(self) -> int:
        """Changes whenever a model is added, replaced, deleted or renamed (by any process)."""
        return self.root.stat().st_mtime_ns

    def rewrite_manifest(self, model_id: str, manifest: dict[str, Any]) -> StoredModel:
        """Replace a stored model's manifest (a rename), atomically."""
        folder = self.root / model_id
        fresh = folder / f"{PARTIAL_PREFIX}{MANIFEST_FILE}"
        try:
            _write_synced(fresh, json.dumps(manifest, indent=2).encode())
            os.rename(fresh, folder / MANIFEST_FILE)
            _fsync_folder(folder)
            os.utime(self.root)  # a new generation: every process reads the names again
        except OSError as exc:
            raise StoreUnavailable(f"the model's manifest could not be written: {exc}") from None
        return self._stored(model_id)

    def get(self, model_id: str) -> StoredModel | None:
        if not is_model_id(model_id):
            return None
        folder = self.root / model_id
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text())
        except (OSError, ValueError):
            return None
        return StoredModel(folder, manifest)

    def list(self) -> list[StoredModel]:
        found = (self.get(p.name) for p in sorted(self.root.iterdir()) if is_model_id(p.name))
        return sorted((m for m in found if m), key=lambda m: m.manifest.get("created", 0))

    def _check_quota(self, adding: int, owner: str | None) -> None:
        stored = self.list()
        _within(self.quota, stored, adding, StoreFull, "the model store", "STORE_MAX")
        if owner is not None:
            own = [m for m in stored if m.owner() == owner]
            _within(self.share, own, adding, StoreShareFull, "this client's share", "STORE_SHARE")

    def _write_partial(
        self, manifest: dict[str, Any], model: bytes, labels: bytes, owner: str | None = None
    ) -> Path:
        partial = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=self.root))
        try:
            _write_synced(partial / MODEL_FILE, model)
            _write_synced(partial / LABELS_FILE, labels)
            if owner is not None:
                _write_synced(partial / OWNER_FILE, owner.encode())
            _write_synced(partial / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
            _fsync_folder(partial)
        except OSError:
            shutil.rmtree(partial, ignore_errors=True)
            raise
        return partial

    def add(
        self, manifest: dict[str, Any], model: bytes, labels: bytes, owner: str | None = None
    ) -> tuple[StoredModel, bool]:
        """Store a model atomically for `owner`, within the quotas and its share; whether it is
        new. If the same id is already there (a concurrent registration of the same model won),
        that copy stays."""
        final = self.root / manifest["id"]
        if (final / MANIFEST_FILE).is_file():
            return self._stored(manifest["id"]), False
        self._check_quota(len(model), owner)
        try:
            partial = self._write_partial(manifest, model, labels, owner)
            try:
                os.rename(partial, final)
                created = True
            except OSError:
                shutil.rmtree(partial, ignore_errors=True)
                if not (final / MANIFEST_FILE).is_file():
                    raise
                created = False
            _fsync_folder(self.root)
        except OSError as exc:
            raise StoreUnavailable(f"the model could not be stored: {exc}") from None
        return self._stored(manifest["id"]), created

    def replace(self, manifest: dict[str, Any], model: bytes, labels: bytes) -> StoredModel:
        """Store a model whatever the store holds under its id (the default model, rebuilt from
        MODEL_DIR at start-up): the new folder is complete before the old one moves aside."""
        final = self.root / manifest["id"]
        doomed = self.root / f"{PARTIAL_PREFIX}replaced-{manifest['id']}-{os.getpid()}"
        try:
            partial = self._write_partial(manifest, model, labels)
            try:
                with contextlib.suppress(FileNotFoundError):
                    os.rename(final, doomed)
                os.rename(partial, final)
            except OSError:
                shutil.rmtree(partial, ignore_errors=True)
                if not (final / MANIFEST_FILE).is_file():  # another process's copy is in place
                    raise
            shutil.rmtree(doomed, ignore_errors=True)
            _fsync_folder(self.root)
        except OSError as exc:
            raise StoreUnavailable(f"the model could not be stored: {exc}") from None
        return self._stored(manifest["id"])

    def _stored(self, model_id: str) -> StoredModel:
        stored = self.get(model_id)
        if stored is None:
            raise StoreUnavailable(f"the model {model_id} vanished from the store while written")
        return stored

    def delete(self, model_id: str) -> bool:
        """Remove a model: renamed out of sight first, so readers never see half of it."""
        if self.get(model_id) is None:
            return False
        doomed = self.root / f"{PARTIAL_PREFIX}deleted-{model_id}"
        try:
            os.rename(self.root / model_id, doomed)
            shutil.rmtree(doomed)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise StoreUnavailable(f"the model could not be deleted: {exc}") from None
        return True
