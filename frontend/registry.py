"""Registering models: probe the model once in a worker, line its labels up with its outputs,
and store it with a manifest. The default model is registered the same way at start-up.

A registration's id is the sha256 of the model's bytes, its labels and the options it was
given (tensor names, normalisation) together: the same bytes with other labels or options are
another model, so nobody who registers a public model first can change what it means for the
next one (its name is a label for people, not part of what it is). The same model again is 200
with the entry as it is."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from frontend.errors import InvalidField, ModelTooLarge
from frontend.labels import align_labels, parse_labels
from frontend.models import ModelSource
from frontend.store import ModelStore, StoredModel
from protocol import Normalization, Request, RequestHeader
from supervisor.transport import Transport


def describe_request(model: ModelSource) -> Request:
    """A frame asking a worker to load `model`, run it once on a grey probe image of its own
    input size and describe it."""
    header = RequestHeader(
        height=1,
        width=1,
        image_count=0,
        model_length=len(model.blob),
        input_tensor=model.input_tensor,
        output_tensor=model.output_tensor,
        normalization=model.normalization,
        describe=True,
        model_sha256=model.sha256,
    )
    return Request(header, model.blob, b"")


def probe(transport: Transport, model: ModelSource) -> dict[str, Any]:
    """The worker's description of the model, after running it once."""
    _, description = transport.exchange(describe_request(model))
    assert description is not None
    return description


IDENTITY = "mobilenet-service registration v1"


def registration_id(
    model_sha256: str,
    label_lines: list[str] | tuple[str, ...],
    input_tensor: str | None = None,
    output_tensor: str | None = None,
    normalization: Normalization | None = None,
) -> str:
    """The id of a model registered with these labels (parsed: line endings and trailing blank
    lines do not count) and options."""
    fields = {
        "model": model_sha256,
        "labels": hashlib.sha256("\n".join(label_lines).encode()).hexdigest(),
        "input_tensor": input_tensor,
        "output_tensor": output_tensor,
        "normalization": (normalization or Normalization()).to_wire(),
    }
    return hashlib.sha256(json.dumps([IDENTITY, fields], sort_keys=True).encode()).hexdigest()


def register(
    store: ModelStore,
    transport: Transport,
    blob: bytes,
    labels: bytes,
    *,
    name: str,
    max_bytes: int,
    input_tensor: str | None = None,
    output_tensor: str | None = None,
    normalization: Normalization | None = None,
    replace: bool = False,
) -> tuple[StoredModel, bool]:
    """The stored model and whether it is new. `replace`: store it whatever the store holds
    under its id (the default model, rebuilt at start-up)."""
    if not blob:
        raise InvalidField("the model file is empty (0 bytes)")
    if len(blob) > max_bytes:
        raise ModelTooLarge(f"the model is {len(blob)} bytes, over MAX_MODEL_BYTES={max_bytes}")
    normalization = normalization or Normalization()
    model_sha256 = hashlib.sha256(blob).hexdigest()
    lines = parse_labels(labels)
    model_id = registration_id(model_sha256, lines, input_tensor, output_tensor, normalization)
    existing = store.get(model_id)
    if existing is not None and not replace:
        return existing, False
    candidate = ModelSource(
        name=name,
        blob=blob,
        label_lines=tuple(lines),
        origin="registered",
        input_tensor=input_tensor,
        output_tensor=output_tensor,
        normalization=normalization,
    )
    description = probe(transport, candidate)
    aligned = align_labels(lines, description["output"]["classes"])
    manifest = {
        "id": model_id,
        "sha256": model_sha256,
        "name": name,
        "bytes": len(blob),
        "created": time.time(),
        "options": {
            "input_tensor": input_tensor,
            "output_tensor": output_tensor,
            "normalization": normalization.to_wire(),
        },
        **description,
        "labels": {"count": len(lines), "alignment": aligned.alignment, "note": aligned.note},
    }
    if replace:
        if existing is not None and _same(existing, manifest, labels):
            return existing, False  # nothing to rebuild: no folder swap under other readers
        return store.replace(manifest, blob, labels), existing is None
    return store.add(manifest, blob, labels)


def _same(stored: StoredModel, manifest: dict[str, Any], labels: bytes) -> bool:
    """Whether the stored entry is `manifest` (but for when it was made) with these labels."""

    def timeless(entry: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in entry.items() if key != "created"}

    try:
        return timeless(stored.manifest) == timeless(manifest) and stored.labels_bytes() == labels
    except OSError:
        return False
