"""Models the frontend can send to a worker: the default one from MODEL_DIR, or an upload."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frontend.errors import DefaultModelMissing, InvalidField
from frontend.labels import parse_labels
from protocol import detect_format


@dataclass(frozen=True)
class ModelSource:
    name: str
    blob: bytes
    label_lines: tuple[str, ...]
    origin: str  # "default" or "upload"

    @property
    def format(self) -> str:
        return detect_format(self.blob)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.blob).hexdigest()

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "format": self.format,
            "origin": self.origin,
            "bytes": len(self.blob),
        }


def load_default_model(config: dict[str, Any]) -> ModelSource | None:
    """The default model from MODEL_DIR, or None when `make models` has not put it there."""
    folder = Path(config["MODEL_DIR"])
    model_path, labels_path = folder / config["DEFAULT_MODEL"], folder / config["DEFAULT_LABELS"]
    if not (model_path.is_file() and labels_path.is_file()):
        return None
    return ModelSource(
        name=model_path.name,
        blob=model_path.read_bytes(),
        label_lines=tuple(parse_labels(labels_path.read_bytes())),
        origin="default",
    )


def require_default(model: ModelSource | None, config: dict[str, Any]) -> ModelSource:
    if model is None:
        raise DefaultModelMissing(
            f"the default model {config['DEFAULT_MODEL']} is not in {config['MODEL_DIR']}: "
            "run `make models`"
        )
    return model


def uploaded_model(name: str, blob: bytes, labels: bytes | None) -> ModelSource:
    if not blob:
        raise InvalidField("the model file is empty (0 bytes)")
    if labels is None:
        raise InvalidField("an uploaded model needs its labels file (field label_file)")
    return ModelSource(
        name=name or "uploaded", blob=blob, label_lines=tuple(parse_labels(labels)), origin="upload"
    )
