"""Registering models: probe the model once in a worker, line its labels up with its outputs,
and store it with a manifest. The default model is registered the same way on first use."""

from __future__ import annotations

import hashlib
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
) -> tuple[StoredModel, bool]:
    """The stored model and whether it is new. The same bytes always give the same id."""
    if not blob:
        raise InvalidField("the model file is empty (0 bytes)")
    if len(blob) > max_bytes:
        raise ModelTooLarge(f"the model is {len(blob)} bytes, over MAX_MODEL_BYTES={max_bytes}")
    model_id = hashlib.sha256(blob).hexdigest()
    lines = parse_labels(labels)
    existing = store.get(model_id)
    if existing is not None:  # the first registration's labels stay; these must still fit
        align_labels(lines, existing.manifest["output"]["classes"])
        return existing, False
    candidate = ModelSource(
        name=name,
        blob=blob,
        label_lines=tuple(lines),
        origin="registered",
        input_tensor=input_tensor,
        output_tensor=output_tensor,
        normalization=normalization or Normalization(),
    )
    description = probe(transport, candidate)
    aligned = align_labels(lines, description["output"]["classes"])
    manifest = {
        "id": model_id,
        "name": name,
        "bytes": len(blob),
        "created": time.time(),
        **description,
        "labels": {"count": len(lines), "alignment": aligned.alignment, "note": aligned.note},
    }
    return store.add(manifest, blob, labels), True
