"""Models the frontend runs: a stored one (the default model is stored too) or an upload used
once, with its bytes hashed once and what a frame needs to run it, as its preparation found it
(frontend/dataplane/manifest.py)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from frontend.dataplane.manifest import Description, Manifest, Options
from frontend.errors import InvalidField
from frontend.labels import Labels, align_labels, parse_labels
from frontend.preprocessing import DEFAULT as DEFAULT_PROFILE
from frontend.preprocessing import Profile
from frontend.preprocessing import profile as profile_named
from protocol import Normalization, detect_format


@dataclass(frozen=True)
class ModelSource:
    name: str
    blob: bytes
    sha256: str  # of `blob`, hashed once
    label_lines: tuple[str, ...]
    origin: str  # "default", "registered" or "upload"
    options: Options = field(default_factory=Options)  # as asked for
    described: Description | None = None  # None: not prepared yet
    manifest: Manifest | None = None  # a registered model's
    # Labels lined up with the model's outputs, by their count: done once per model, not per
    # request (a stored model's source is kept between requests).
    _aligned: dict[int, Labels] = field(default_factory=dict, compare=False, repr=False)

    @property
    def id(self) -> str | None:
        return self.manifest.id if self.manifest else None

    def labels(self, classes: int) -> Labels:
        """The labels lined up with `classes` outputs (frontend/labels.py)."""
        aligned = self._aligned.get(classes)
        if aligned is None:
            stored_as = self.manifest.labels.get("alignment") if self.manifest else None
            aligned = align_labels(list(self.label_lines), classes, stored_as)
            self._aligned[classes] = aligned
        return aligned

    @property
    def input_tensor(self) -> str | None:
        return self.described.input.name if self.described else self.options.input_tensor

    @property
    def output_tensor(self) -> str | None:
        return self.described.output.name if self.described else self.options.output_tensor

    @property
    def normalization(self) -> Normalization:
        """The one it runs with (`model_default` until it is prepared)."""
        return self.described.normalization if self.described else self.options.normalization

    @property
    def profile(self) -> Profile:
        """How its photos are prepared (frontend/preprocessing.py)."""
        return profile_named(self.described.profile) if self.described else DEFAULT_PROFILE

    @property
    def takes_batches(self) -> bool:
        return self.described is not None and self.described.input.batch is None

    @property
    def takes_pixels(self) -> bool:
        """Its input is 8-bit (a quantized model): it takes the pixels as they are."""
        return self.described is not None and self.described.input.takes_pixels

    @property
    def classes(self) -> int:
        """Its outputs, as its preparation found them."""
        if self.described is None:
            raise ValueError(f"{self.name} was not prepared (frontend/dataplane/preparation.py)")
        return self.described.output.classes

    def size(self, default: int) -> tuple[int, int]:
        """(height, width) its images are prepared at; `default` (INPUT_SIZE) when unknown."""
        if self.described is None:
            return default, default
        return self.described.input.height, self.described.input.width

    def describe(self) -> dict[str, Any]:
        """The model's identity for answers; `id` is null for an upload used once. `format` is
        what runs; `source_format` what was uploaded (a Keras file runs as a GraphDef)."""
        described = self.described
        model_format = described.format if described else detect_format(self.blob)
        source = (described.source if described else None) or {}
        return {
            "id": self.id,
            "sha256": self.sha256,
            "name": self.name,
            "format": model_format,
            "source_format": source.get("format", model_format),
            "origin": self.origin,
            "preprocessing": self.profile.name,
        }

    def input_description(self) -> dict[str, Any]:
        """How 8-bit pixels become its input: a float model's mean and std, or a quantized
        model's scale and zero point (its input is the pixels)."""
        if self.takes_pixels:
            assert self.described is not None
            scale, zero_point = self.described.input.quantization or (0.0, 0)
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


def uploaded_model(
    name: str, blob: bytes, labels: bytes | None, options: Options | None = None
) -> ModelSource:
    """An upload, not prepared yet (frontend/dataplane/preparation.py checks its bytes)."""
    if labels is None:
        raise InvalidField("an uploaded model needs its labels file (field label_file)")
    return ModelSource(
        name=name or "uploaded",
        blob=blob,
        sha256=hashlib.sha256(blob).hexdigest(),
        label_lines=tuple(parse_labels(labels)),
        origin="upload",
        options=options or Options(),
    )


def from_manifest(
    manifest: Manifest, blob: bytes, label_lines: tuple[str, ...], origin: str
) -> ModelSource:
    """A registered model, as its manifest says it runs."""
    return ModelSource(
        name=manifest.name,
        blob=blob,
        sha256=manifest.sha256,
        label_lines=label_lines,
        origin=origin,
        options=manifest.options,
        described=manifest.described,
        manifest=manifest,
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
