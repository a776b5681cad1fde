"""The model store: a content-addressed folder (MODEL_STORE), one folder per model named by the
sha256 of its bytes, holding `model.bin`, `labels.txt` and `manifest.json`.

Writes are atomic: a model is written into a hidden temporary folder, every file fsynced, then
the folder is renamed into place and the parent fsynced. A crash leaves either nothing or the
whole model; hidden leftovers of a crash are removed when the store opens.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frontend.errors import StoreUnavailable

MODEL_FILE, LABELS_FILE, MANIFEST_FILE = "model.bin", "labels.txt", "manifest.json"
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


def _is_model_id(name: str) -> bool:
    return len(name) == 64 and all(c in "0123456789abcdef" for c in name)


class ModelStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        try:
            root.mkdir(parents=True, exist_ok=True)
            for leftover in root.glob(PARTIAL_PREFIX + "*"):
                shutil.rmtree(leftover, ignore_errors=True)
        except OSError as exc:
            raise StoreUnavailable(f"the model store {root} cannot be opened: {exc}") from None

    def get(self, model_id: str) -> StoredModel | None:
        if not _is_model_id(model_id):
            return None
        folder = self.root / model_id
        try:
            manifest = json.loads((folder / MANIFEST_FILE).read_text())
        except (OSError, ValueError):
            return None
        return StoredModel(folder, manifest)

    def list(self) -> list[StoredModel]:
        found = (self.get(p.name) for p in sorted(self.root.iterdir()) if _is_model_id(p.name))
        return sorted((m for m in found if m), key=lambda m: m.manifest.get("created", 0))

    def add(self, manifest: dict[str, Any], model: bytes, labels: bytes) -> StoredModel:
        """Store a model atomically. If the same id is already there, that copy wins."""
        final = self.root / manifest["id"]
        try:
            partial = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=self.root))
            try:
                _write_synced(partial / MODEL_FILE, model)
                _write_synced(partial / LABELS_FILE, labels)
                _write_synced(partial / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
                _fsync_folder(partial)
                os.rename(partial, final)
                _fsync_folder(self.root)
            except OSError:
                shutil.rmtree(partial, ignore_errors=True)
                if not (final / MANIFEST_FILE).is_file():
                    raise
        except OSError as exc:
            raise StoreUnavailable(f"the model could not be stored: {exc}") from None
        stored = self.get(manifest["id"])
        assert stored is not None
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
