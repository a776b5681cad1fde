"""A registered model's manifest, typed: what it was registered with (its options, part of its
id), what its preparation found (input, output, normalisation, preprocessing, labels) and what
runs (its format and bytes; a converted model's source). Stored as JSON beside the model
(frontend/store.py) and answered as that JSON; read back from stores written by earlier
versions, whose manifests lack the newer fields."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from protocol import Normalization, parse_normalization

IDENTITY = "mobilenet-service registration v1"
MODEL_DEFAULT = {"mode": "model_default"}


@dataclass(frozen=True)
class Options:
    """What a registration asks for beyond the model and its labels; part of its id."""

    input_tensor: str | None = None
    output_tensor: str | None = None
    normalization: Normalization = field(default_factory=Normalization)
    input_size: tuple[int, int] | None = None
    preprocessing: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "input_tensor": self.input_tensor,
            "output_tensor": self.output_tensor,
            "normalization": self.normalization.to_wire(),
            "input_size": list(self.input_size) if self.input_size else None,
            "preprocessing": self.preprocessing,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> Options:
        raw = raw or {}
        size = raw.get("input_size")
        return cls(
            input_tensor=raw.get("input_tensor"),
            output_tensor=raw.get("output_tensor"),
            normalization=parse_normalization(raw.get("normalization") or MODEL_DEFAULT),
            input_size=(size[0], size[1]) if size else None,
            preprocessing=raw.get("preprocessing"),
        )

    def differences(self, other: Options) -> dict[str, Any]:
        """The options `other` has other than these, as `other` has them."""
        mine, theirs = self.to_dict(), other.to_dict()
        return {key: value for key, value in theirs.items() if mine[key] != value}


def registration_id(
    model_sha256: str, label_lines: tuple[str, ...] | list[str], options: Options
) -> str:
    """The id of a model registered with these labels (parsed: line endings, numbers and
    trailing blank lines do not count) and options. Options added later count only when set,
    so ids registered before them stay the same."""
    fields: dict[str, Any] = {
        "model": model_sha256,
        "labels": hashlib.sha256("\n".join(label_lines).encode()).hexdigest(),
        "input_tensor": options.input_tensor,
        "output_tensor": options.output_tensor,
        "normalization": options.normalization.to_wire(),
    }
    if options.input_size is not None:
        fields["input_size"] = list(options.input_size)
    if options.preprocessing is not None:
        fields["preprocessing"] = options.preprocessing
    return hashlib.sha256(json.dumps([IDENTITY, fields], sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class InputSpec:
    name: str
    height: int
    width: int
    size_source: str
    dtype: str
    quantization: tuple[float, int] | None
    batch: int | None  # None: any batch size

    @property
    def takes_pixels(self) -> bool:
        """An 8-bit input (a quantized model): it takes the pixels as they are."""
        return self.dtype == "uint8"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "height": self.height,
            "width": self.width,
            "size_source": self.size_source,
            "dtype": self.dtype,
            "quantization": list(self.quantization) if self.quantization else None,
            "batch": self.batch,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> InputSpec:
        quantization = raw.get("quantization")
        return cls(
            name=raw["name"],
            height=raw["height"],
            width=raw["width"],
            size_source=raw.get("size_source", "graph"),
            dtype=raw.get("dtype", "float32"),
            quantization=(quantization[0], quantization[1]) if quantization else None,
            batch=raw.get("batch", 1),
        )


@dataclass(frozen=True)
class OutputSpec:
    name: str
    classes: int
    softmax_applied: bool
    kind: str  # probabilities, logits or features (worker/inputs.py)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "classes": self.classes,
            "softmax_applied": self.softmax_applied,
            "kind": self.kind,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> OutputSpec:
        softmax = bool(raw.get("softmax_applied", False))
        kind = raw.get("kind") or ("logits" if softmax else "probabilities")
        return cls(raw["name"], raw["classes"], softmax, kind)


@dataclass(frozen=True)
class Description:
    """What a worker found out about a model and what its preparation chose
    (frontend/dataplane/preparation.py): all of a manifest but what the registration adds."""

    format: str
    input: InputSpec
    output: OutputSpec
    normalization: Normalization
    normalization_found: dict[str, Any]
    preprocessing: dict[str, Any]  # profile, source, tool
    source: dict[str, Any] | None = None  # a converted model's upload: format, sha256, bytes

    @property
    def profile(self) -> str:
        return self.preprocessing.get("profile") or "bilinear"

    def to_dict(self) -> dict[str, Any]:
        described = {
            "format": self.format,
            "input": self.input.to_dict(),
            "output": self.output.to_dict(),
            "normalization": self.normalization.to_wire(),
            "normalization_found": self.normalization_found,
            "preprocessing": self.preprocessing,
        }
        if self.source is not None:
            described["source"] = self.source
        return described

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Description:
        return cls(
            format=raw["format"],
            input=InputSpec.from_dict(raw["input"]),
            output=OutputSpec.from_dict(raw["output"]),
            normalization=parse_normalization(raw.get("normalization") or MODEL_DEFAULT),
            normalization_found=raw.get("normalization_found") or {},
            preprocessing=raw.get("preprocessing") or {"profile": "bilinear", "source": "default"},
            source=raw.get("source"),
        )


@dataclass(frozen=True)
class Manifest:
    id: str
    name: str
    sha256: str  # of the bytes that run (a converted model's, not its upload's)
    bytes: int
    created: float
    options: Options
    described: Description
    labels: dict[str, Any]  # count, alignment, note

    @property
    def uploaded_sha256(self) -> str:
        """The sha256 of the bytes that were uploaded (a converted model's source's)."""
        return (self.described.source or {}).get("sha256") or self.sha256

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "name": self.name,
            "bytes": self.bytes,
            "created": self.created,
            "options": self.options.to_dict(),
            **self.described.to_dict(),
            "labels": self.labels,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Manifest:
        return cls(
            id=raw["id"],
            name=raw.get("name", ""),
            sha256=raw["sha256"],
            bytes=raw.get("bytes", 0),
            created=raw.get("created", 0.0),
            options=Options.from_dict(raw.get("options")),
            described=Description.from_dict(raw),
            labels=raw.get("labels") or {},
        )
