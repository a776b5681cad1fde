"""Preparing a model: check its bytes, probe it once in a worker, choose how its photos are
prepared and the range its input takes, line its labels up, and (to register it) store it with
its manifest (frontend/dataplane/manifest.py). The default model is registered the same way at
start-up; uploads used once are prepared the same way and kept in memory instead.

A registration's id covers the model's bytes, its labels and its options together: the same
bytes with other labels or options are another model, so nobody who registers a public model
first can change what it means for the next one. The same model again is 200 with the entry as
it is (renamed if another name is asked: frontend/dataplane/catalog.py); the same bytes with
other labels or options are a new entry, and the answer names the others and what they differ
in. A registration stores what workers run: a Keras file's or a TensorFlow 1 SavedModel's
converted GraphDef, with the upload's format and sha256 under `source`."""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import dataclass
from typing import Any

from frontend.dataplane.catalog import Catalog, check_name, name_from_filename
from frontend.dataplane.manifest import (
    Description,
    InputSpec,
    Manifest,
    OutputSpec,
    registration_id,
)
from frontend.dataplane.models import ModelSource
from frontend.dataplane.runner import Runner
from frontend.errors import InvalidField, ModelTooLarge, NotAClassifier
from frontend.images import check_input_size
from frontend.labels import align_labels
from frontend.normalization import detect
from frontend.preprocessing import DEFAULT as DEFAULT_PROFILE
from frontend.preprocessing import PROFILES, Profile, profile
from frontend.store import StoredModel
from protocol import detect_format, parse_normalization


@dataclass(frozen=True)
class Registered:
    stored: StoredModel
    created: bool
    renamed_from: str | None = None  # the same model registered again under another name


def check_upload(blob: bytes, max_bytes: int) -> None:
    """What an uploaded model must be before any worker sees it: not empty, within
    MAX_MODEL_BYTES, and one of the formats taken (UnknownModelFormat, 422, at once)."""
    if not blob:
        raise InvalidField("the model file is empty (0 bytes)")
    if len(blob) > max_bytes:
        raise ModelTooLarge(f"the model is {len(blob)} bytes, over MAX_MODEL_BYTES={max_bytes}")
    detect_format(blob)


def _profile(tool: str | None, asked: str | None, own: bool) -> tuple[Profile, dict[str, Any]]:
    """The preprocessing profile (frontend/preprocessing.py): the one asked for, the
    service's own for its default model (whose expected answers were computed so), the one of
    the tool the worker recognised in the model, else the service's own."""
    if asked is not None:
        chosen, source = profile(asked), "given"
    elif own:
        chosen, source = DEFAULT_PROFILE, "service"
    elif tool in PROFILES:
        chosen, source = PROFILES[tool], "recognized"
    else:
        chosen, source = DEFAULT_PROFILE, "default"
    return chosen, {"profile": chosen.name, "source": source, "tool": tool}


def _converted(
    upload: ModelSource, found: dict[str, Any], max_bytes: int
) -> tuple[bytes, dict[str, Any] | None]:
    """The bytes that run (a Keras file's or TF1 SavedModel's converted GraphDef, which the
    worker sends back) and, for a converted model, what was uploaded."""
    converted = found.pop("converted_model", None)
    source_format = found.pop("source_format", None)
    if converted is None:
        return upload.blob, None
    if len(converted) > max_bytes:
        raise ModelTooLarge(
            f"the converted model is {len(converted)} bytes, over MAX_MODEL_BYTES={max_bytes}"
        )
    return converted, {"format": source_format, "sha256": upload.sha256, "bytes": len(upload.blob)}


def prepare(
    runner: Runner, upload: ModelSource, max_bytes: int, own: bool = False
) -> tuple[Description, bytes, str]:
    """What a worker finds out about an upload (tensors, input size and how it was found,
    outputs, the tool that made it) and what the preparation chooses (the preprocessing
    profile; the range: given, its own for a quantized input, its tool's, else detected on
    the calibration photos, frontend/normalization.py); and the bytes that run, with their
    sha256. `own`: the service's default model."""
    options = upload.options
    found = runner.describe(upload, options.input_size)
    output = OutputSpec.from_dict(found["output"])
    if output.kind == "features":
        raise NotAClassifier(
            f"the model's output {output.name!r} holds {output.classes} values, none negative "
            "and some over 1: features of an embedding model, not scores of classes. Name the "
            "classifier's output with output_tensor, or export the model with its "
            "classification layer"
        )
    check_input_size(found["input"]["height"], found["input"]["width"])
    blob, source = _converted(upload, found, max_bytes)
    sha256 = upload.sha256 if source is None else hashlib.sha256(blob).hexdigest()
    chosen, preprocessing = _profile(found.get("tool"), options.preprocessing, own)
    described = Description(
        format=found["format"],
        input=InputSpec.from_dict(found["input"]),
        output=output,
        normalization=parse_normalization(found["normalization"]),
        normalization_found={"source": "given"},
        preprocessing=preprocessing,
        source=source,
    )
    if options.normalization.mode != "model_default":
        return described, blob, sha256
    if not described.input.dtype.startswith(("float", "bfloat")):
        found_range: dict[str, Any] = {"source": "model"}  # a quantized input's own scale
        return dataclasses.replace(described, normalization_found=found_range), blob, sha256
    if chosen.float_range is not None:  # the tool's convention, not a guess from photos
        by_tool = {"source": "profile", "profile": chosen.name}
        ranged = dataclasses.replace(
            described, normalization=chosen.float_range, normalization_found=by_tool
        )
        return ranged, blob, sha256
    runnable = dataclasses.replace(upload, blob=blob, sha256=sha256, described=described)
    size = (described.input.height, described.input.width)
    detected, report = detect(runner, runnable, size, chosen)
    found = dataclasses.replace(described, normalization=detected, normalization_found=report)
    return found, blob, sha256


def register(
    catalog: Catalog,
    runner: Runner,
    upload: ModelSource,
    labels: bytes,
    name: str | None,
    filename: str,
    max_bytes: int,
    replace: bool = False,
    owner: str | None = None,
) -> Registered:
    """Register `upload` with these labels for `owner` (whose share of the store it takes).
    `name`: the one asked for (unique), or None for one made from `filename`. `replace`: store
    it whatever the store holds under its id, with its name as given (the default model,
    rebuilt at start-up)."""
    check_upload(upload.blob, max_bytes)
    if name is not None and not replace:
        check_name(name)
    if upload.options.preprocessing is not None:
        profile(upload.options.preprocessing)  # one that exists, before anything runs
    store = catalog.store
    model_id = registration_id(upload.sha256, upload.label_lines, upload.options)
    existing = store.get(model_id)
    if existing is not None and not replace:
        if name is None or name == existing.manifest.get("name"):
            return Registered(existing, False)
        renamed, old_name = catalog.rename(model_id, name)
        return Registered(renamed, False, old_name)
    if name is not None and not replace:
        catalog.check_free(name, model_id)  # before the model runs; again when it is stored
    described, runnable, sha256 = prepare(runner, upload, max_bytes, own=replace)
    aligned = align_labels(list(upload.label_lines), described.output.classes)
    manifest = Manifest(
        id=model_id,
        name=name or "",
        sha256=sha256,
        bytes=len(runnable),
        created=time.time(),
        options=upload.options,
        described=described,
        labels={"count": len(upload.label_lines), "alignment": aligned.alignment,
                "note": aligned.note},
    )  # fmt: skip
    if replace:
        if existing is not None and _same(existing, manifest, labels):
            return Registered(existing, False)  # nothing to rebuild: no folder swap under others
        return Registered(store.replace(manifest.to_dict(), runnable, labels), existing is None)
    with store.locked():
        if name is None:
            named = catalog.free_name(name_from_filename(filename), model_id)
            manifest = dataclasses.replace(manifest, name=named)
        else:
            catalog.check_free(name, model_id)
        stored, created = store.add(manifest.to_dict(), runnable, labels, owner)
    return Registered(stored, created)


def other_registrations(catalog: Catalog, stored: StoredModel) -> list[dict[str, Any]]:
    """The other entries of the same uploaded bytes, and what they differ in: registering the
    same model with other labels or options makes another entry, and the answer says which."""
    own = Manifest.from_dict(stored.manifest)
    others = []
    for entry in catalog.store.list():
        theirs = Manifest.from_dict(entry.manifest)
        if entry.id == stored.id or theirs.uploaded_sha256 != own.uploaded_sha256:
            continue
        differs: dict[str, Any] = own.options.differences(theirs.options)
        if entry.labels_bytes() != stored.labels_bytes():
            differs["labels"] = "another labels file"
        others.append({"id": entry.id, "name": theirs.name, "differs": differs})
    return others


def _same(stored: StoredModel, manifest: Manifest, labels: bytes) -> bool:
    """Whether the stored entry is `manifest` (but for when it was made) with these labels."""

    def timeless(entry: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in entry.items() if key != "created"}

    try:
        return timeless(stored.manifest) == timeless(manifest.to_dict()) and (
            stored.labels_bytes() == labels
        )
    except OSError:
        return False
