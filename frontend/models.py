"""Models the frontend can send to a worker: a stored one (the default model is stored too) or
an ad-hoc upload, with what a frame needs to run it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from frontend.errors import InvalidField
from frontend.labels import Labels, align_labels, parse_labels
from frontend.preprocessing import DEFAULT as DEFAULT_PROFILE
from frontend.preprocessing import Profile
from frontend.preprocessing import profile as profile_named
from frontend.store import StoredModel
from protocol import Normalization, detect_format
from protocol.frame import parse_normalization


@dataclass(frozen=True)
class ModelSource:
    name: str
    blob: bytes
    label_lines: tuple[str, ...]
    origin: str  # "default", "registered" or "upload"
    input_size: tuple[int, int] | None = None  # None: the INPUT_SIZE setting
    input_tensor: str | None = None
    output_tensor: str | None = None
    normalization: Normalization = field(default_factory=Normalization)
    manifest: dict[str, Any] | None = None
    # Labels lined up with the model's outputs, by their count: done once per model, not per
    # request (a stored model's source is kept between requests).
    _aligned: dict[int, Labels] = field(default_factory=dict, compare=False, repr=False)

    def labels(self, classes: int) -> Labels:
        """The labels lined up with `classes` outputs (frontend/labels.py)."""
        aligned = self._aligned.get(classes)
        if aligned is None:
            stored_as = ((self.manifest or {}).get("labels") or {}).get("alignment")
            aligned = align_labels(list(self.label_lines), classes, stored_as)
            self._aligned[classes] = aligned
        return aligned

    @property
    def profile(self) -> Profile:
        """How its photos are prepared (frontend/preprocessing.py): as its registration chose;
        the service's own for models registered before profiles, and for unprepared ones."""
        chosen = ((self.manifest or {}).get("preprocessing") or {}).get("profile")
        return DEFAULT_PROFILE if chosen is None else profile_named(chosen)

    @property
    def takes_batches(self) -> bool:
        """Known for registered models only: their manifest says `batch: null`."""
        return self.manifest is not None and self.manifest["input"].get("batch", 1) is None

    @cached_property
    def sha256(self) -> str:
        """Of the model's bytes (a registration's id also covers its labels and options)."""
        if self.manifest is not None:
            return self.manifest["sha256"]
        return hashlib.sha256(self.blob).hexdigest()

    def describe(self) -> dict[str, Any]:
        """The model's identity for answers; `id` is null for an unregistered upload. `format`
        is what runs; `source_format` what was uploaded (a Keras file runs as a GraphDef)."""
        manifest = self.manifest or {}
        model_format = manifest.get("format") or detect_format(self.blob)
        source = manifest.get("source") or {}
        return {
            "id": manifest.get("id"),
            "sha256": self.sha256,
            "name": self.name,
            "format": model_format,
            "source_format": source.get("format", model_format),
            "origin": self.origin,
            "preprocessing": self.profile.name,
        }

    def size(self, default: int) -> tuple[int, int]:
        """(height, width) its images are prepared at; `default` (INPUT_SIZE) when unknown."""
        return self.input_size or (default, default)

    @property
    def classes(self) -> int:
        """Its outputs, as its preparation found them."""
        if self.manifest is None:
            raise ValueError(f"{self.name} was not prepared (frontend/registry.py)")
        return self.manifest["output"]["classes"]

    @property
    def takes_pixels(self) -> bool:
        """Its input is 8-bit (a quantized model): it takes the pixels as they are."""
        return self.manifest is not None and self.manifest["input"].get("dtype") == "uint8"

    def input_description(self) -> dict[str, Any]:
        """How 8-bit pixels become its input: a float model's mean and std, or a quantized
        model's scale and zero point (its input is the pixels)."""
        if self.takes_pixels:
            scale, zero_point = self.manifest["input"].get("quantization") or (0.0, 0)  # type: ignore[index]
            return {"dtype": "uint8", "scale": scale, "zero_point": zero_point}
        mean, std = _mean_std(self.normalization)
        return {"dtype": "float32", "mean": list(mean), "std": list(std)}

    def pixels_from_input(
        self, data: np.ndarray | list[bytes], shape: list[int], default_size: int
    ) -> np.ndarray:
        """8-bit pixels [n, h, w, 3] from a prepared tensor: uint8 pixels as they are, float32
        values as the model takes them mapped back to pixels (the workers take 8-bit pixels;
        a value between two grey levels goes to the nearer one)."""
        height, width = self.size(default_size)
        if len(shape) != 4 or shape[1:] != [height, width, 3] or shape[0] < 1:
            raise InvalidField(
                f"the input tensor must have shape [n, {height}, {width}, 3], got {shape}"
            )
        array = np.asarray(data).reshape(shape)
        if array.dtype == np.uint8:
            return array
        if self.takes_pixels:  # real = (q - zero_point) * scale
            description = self.input_description()
            pixels = array / (description["scale"] or 1.0) + description["zero_point"]
        else:
            mean, std = _mean_std(self.normalization)
            pixels = array * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
        pixels = np.round(pixels)
        if not np.all(np.isfinite(pixels)) or pixels.min() < -0.5 or pixels.max() > 255.5:
            raise InvalidField(
                "the FP32 input is outside the model's input range "
                f"({self.input_description()}); send values as the model takes them"
            )
        return np.clip(pixels, 0, 255).astype(np.uint8)


def from_manifest(
    manifest: dict[str, Any], blob: bytes, label_lines: tuple[str, ...], origin: str
) -> ModelSource:
    """A model with what its preparation found (frontend/registry.py): size, tensors and
    normalisation."""
    size = manifest["input"]["height"], manifest["input"]["width"]
    return ModelSource(
        name=manifest["name"],
        blob=blob,
        label_lines=label_lines,
        origin=origin,
        input_size=size if None not in size else None,
        input_tensor=manifest["input"]["name"],
        output_tensor=manifest["output"]["name"],
        normalization=parse_normalization(manifest["normalization"]),
        manifest=manifest,
    )


def from_stored(stored: StoredModel, origin: str) -> ModelSource:
    labels = tuple(parse_labels(stored.labels_bytes()))
    return from_manifest(stored.manifest, stored.model_bytes(), labels, origin)


def default_files(config: dict[str, Any]) -> tuple[Path, Path]:
    folder = Path(config["MODEL_DIR"])
    return folder / config["DEFAULT_MODEL"], folder / config["DEFAULT_LABELS"]


def uploaded_model(name: str, blob: bytes, labels: bytes | None) -> ModelSource:
    """An upload to run once; frontend/registry.py's `check_upload` checks its bytes."""
    if labels is None:
        raise InvalidField("an uploaded model needs its labels file (field label_file)")
    return ModelSource(
        name=name or "uploaded",
        blob=blob,
        label_lines=tuple(parse_labels(labels)),
        origin="upload",
    )


def _mean_std(normalization: Normalization) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per channel (R, G, B); a float model's `model_default` is (x - 127.5) / 127.5 and `raw`
    is x itself."""
    if normalization.mode == "raw":
        return (0.0,) * 3, (1.0,) * 3
    if normalization.mode == "model_default":
        return (127.5,) * 3, (127.5,) * 3

    def three(value: Any) -> tuple[float, ...]:
        return tuple(value) if isinstance(value, tuple) else (float(value),) * 3

    return three(normalization.mean), three(normalization.std)
