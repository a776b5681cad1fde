"""Registering models: probe the model once in a worker, line its labels up with its outputs,
and store it with a manifest. The default model is registered the same way at start-up.

A registration's id is the sha256 of the model's bytes, its labels and the options it was
given (tensor names, normalisation, input size) together: the same bytes with other labels or
options are another model, so nobody who registers a public model first can change what it
means for the next one (its name is a label for people, not part of what it is). The same model
again is 200 with the entry as it is; the same bytes with other labels or options are a new
entry, and the answer names the others and what they differ in.

The same model registered again with another `name` is renamed (the answer says from what);
a name another model holds is 409 (frontend/catalog.py). Bytes that are no model format are
refused before any worker sees them (protocol/formats.py).

A registration stores what workers run: a Keras file's converted GraphDef, with the upload's
format and sha256 under `source`. Uploads that are not registered go through the same
preparation (`prepare`), kept in memory instead of the store."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

from frontend.catalog import Catalog, check_name, name_from_filename
from frontend.errors import InvalidField, ModelTooLarge, NotAClassifier
from frontend.labels import align_labels, parse_labels
from frontend.models import ModelSource
from frontend.normalization import detect
from frontend.preprocessing import DEFAULT as DEFAULT_PROFILE
from frontend.preprocessing import PROFILES, Profile, profile
from frontend.store import ModelStore, StoredModel
from protocol import Normalization, Request, RequestHeader, detect_format
from supervisor.transport import Transport


def describe_request(model: ModelSource, probe_size: tuple[int, int] | None = None) -> Request:
    """A frame asking a worker to load `model`, run it once on a grey probe image of its own
    input size (for a graph that fixes none: `probe_size`, else the one that runs) and describe
    it."""
    header = RequestHeader(
        height=1,
        width=1,
        image_count=0,
        model_length=len(model.blob),
        input_tensor=model.input_tensor,
        output_tensor=model.output_tensor,
        normalization=model.normalization,
        describe=True,
        probe_size=probe_size,
        model_sha256=model.sha256,
    )
    return Request(header, model.blob, b"")


def probe(
    transport: Transport, model: ModelSource, probe_size: tuple[int, int] | None = None
) -> dict[str, Any]:
    """The worker's description of the model, after running it once."""
    _, description = transport.exchange(describe_request(model, probe_size))
    assert description is not None
    return description


def _profile(
    description: dict[str, Any], preprocessing: str | None, own: bool
) -> tuple[Profile, dict[str, Any]]:
    """The preprocessing profile (frontend/preprocessing.py): the one asked for, the
    service's own for its default model (whose expected answers were computed so), the one of
    the tool the worker recognised in the model, else the service's own."""
    tool = description.pop("tool", None)
    if preprocessing is not None:
        chosen, source = profile(preprocessing), "given"
    elif own:
        chosen, source = DEFAULT_PROFILE, "service"
    elif tool in PROFILES:
        chosen, source = PROFILES[tool], "recognized"
    else:
        chosen, source = DEFAULT_PROFILE, "default"
    return chosen, {"profile": chosen.name, "source": source, "tool": tool}


def prepare(
    transport: Transport,
    upload: ModelSource,
    normalization: Normalization,
    input_size: tuple[int, int] | None,
    max_bytes: int,
    preprocessing: str | None = None,
    own: bool = False,
) -> tuple[dict[str, Any], bytes]:
    """What workers find out about a model and the bytes they run: its description (tensors,
    input size and how it was found), its preprocessing profile (`preprocessing` if given;
    `own`: the service's default model), the normalisation it takes (given; its own for a
    quantized input; its tool's; else detected on the calibration photos,
    frontend/normalization.py) and, for a Keras file, the GraphDef it was converted to
    (`source` says what was uploaded)."""
    given = dataclasses.replace(upload, normalization=normalization)
    description = probe(transport, given, input_size)
    output = description["output"]
    if output.get("kind") == "features":
        raise NotAClassifier(
            f"the model's output {output['name']!r} holds {output['classes']} values, none "
            "negative and some over 1: features of an embedding model, not scores of classes. "
            "Name the classifier's output with output_tensor, or export the model with its "
            "classification layer"
        )
    converted = description.pop("converted_model", None)
    source_format = description.pop("source_format", None)
    blob = upload.blob
    if converted is not None:
        if len(converted) > max_bytes:
            raise ModelTooLarge(
                f"the converted model is {len(converted)} bytes, over MAX_MODEL_BYTES={max_bytes}"
            )
        blob = converted
        description["source"] = {
            "format": source_format,
            "sha256": upload.sha256,
            "bytes": len(upload.blob),
        }
    size = (description["input"]["height"], description["input"]["width"])
    chosen, description["preprocessing"] = _profile(description, preprocessing, own)
    if normalization.mode != "model_default":
        report: dict[str, Any] = {"source": "given"}
    elif not description["input"]["dtype"].startswith(("float", "bfloat")):
        report = {"source": "model"}  # a quantized input's own scale and zero point
    elif chosen.float_range is not None:  # the tool's convention, not a guess from photos
        description["normalization"] = chosen.float_range.to_wire()
        report = {"source": "profile", "profile": chosen.name}
    else:
        runnable = ModelSource(
            name=upload.name,
            blob=blob,
            label_lines=upload.label_lines,
            origin=upload.origin,
            input_size=size,
            input_tensor=description["input"]["name"],
            output_tensor=description["output"]["name"],
        )
        detected, report = detect(transport, runnable, size, chosen)
        description["normalization"] = detected.to_wire()
    description["normalization_found"] = report
    return description, blob


IDENTITY = "mobilenet-service registration v1"
OPTIONS = ("input_tensor", "output_tensor", "normalization", "input_size", "preprocessing")


def registration_id(
    model_sha256: str,
    label_lines: list[str] | tuple[str, ...],
    input_tensor: str | None = None,
    output_tensor: str | None = None,
    normalization: Normalization | None = None,
    input_size: tuple[int, int] | None = None,
    preprocessing: str | None = None,
) -> str:
    """The id of a model registered with these labels (parsed: line endings, numbers and
    trailing blank lines do not count) and options."""
    fields: dict[str, Any] = {
        "model": model_sha256,
        "labels": hashlib.sha256("\n".join(label_lines).encode()).hexdigest(),
        "input_tensor": input_tensor,
        "output_tensor": output_tensor,
        "normalization": (normalization or Normalization()).to_wire(),
    }
    if input_size is not None:  # only then: ids registered before the option stay the same
        fields["input_size"] = list(input_size)
    if preprocessing is not None:  # likewise
        fields["preprocessing"] = preprocessing
    return hashlib.sha256(json.dumps([IDENTITY, fields], sort_keys=True).encode()).hexdigest()


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


def register(
    catalog: Catalog,
    transport: Transport,
    blob: bytes,
    labels: bytes,
    *,
    name: str | None,
    filename: str = "",
    max_bytes: int,
    input_tensor: str | None = None,
    output_tensor: str | None = None,
    normalization: Normalization | None = None,
    input_size: tuple[int, int] | None = None,
    preprocessing: str | None = None,
    replace: bool = False,
) -> Registered:
    """`name`: the one asked for (unique), or None for one made from `filename`. `replace`:
    store it whatever the store holds under its id, with its name as given (the default
    model, rebuilt at start-up)."""
    check_upload(blob, max_bytes)
    if name is not None and not replace:
        check_name(name)
    store = catalog.store
    normalization = normalization or Normalization()
    lines = parse_labels(labels)
    if preprocessing is not None:
        profile(preprocessing)  # one that exists, before anything runs
    model_id = registration_id(
        hashlib.sha256(blob).hexdigest(), lines, input_tensor, output_tensor, normalization,
        input_size, preprocessing,
    )  # fmt: skip
    existing = store.get(model_id)
    if existing is not None and not replace:
        if name is None or name == existing.manifest.get("name"):
            return Registered(existing, False)
        renamed, old_name = catalog.rename(model_id, name)
        return Registered(renamed, False, old_name)
    if name is not None and not replace:
        catalog.check_free(name, model_id)  # before the model runs; again when it is stored
    upload = ModelSource(
        name=name or filename or "model",
        blob=blob,
        label_lines=tuple(lines),
        origin="registered",
        input_tensor=input_tensor,
        output_tensor=output_tensor,
    )
    description, runnable = prepare(
        transport, upload, normalization, input_size, max_bytes, preprocessing, own=replace
    )
    aligned = align_labels(lines, description["output"]["classes"])
    manifest = {
        "id": model_id,
        "sha256": hashlib.sha256(runnable).hexdigest(),
        "name": name,
        "bytes": len(runnable),
        "created": time.time(),
        "options": {
            "input_tensor": input_tensor,
            "output_tensor": output_tensor,
            "normalization": normalization.to_wire(),
            "input_size": list(input_size) if input_size else None,
            "preprocessing": preprocessing,
        },
        **description,
        "labels": {"count": len(lines), "alignment": aligned.alignment, "note": aligned.note},
    }
    if replace:
        if existing is not None and _same(existing, manifest, labels):
            return Registered(existing, False)  # nothing to rebuild: no folder swap under others
        return Registered(store.replace(manifest, runnable, labels), existing is None)
    with store.locked():
        if name is None:
            manifest["name"] = catalog.free_name(name_from_filename(filename), model_id)
        else:
            catalog.check_free(name, model_id)
        stored, created = store.add(manifest, runnable, labels)
    return Registered(stored, created)


def uploaded_sha256(manifest: dict[str, Any]) -> str:
    """The sha256 of the bytes that were uploaded (a converted model's source's)."""
    source = manifest.get("source") or {}
    return source.get("sha256") or manifest["sha256"]


def other_registrations(store: ModelStore, stored: StoredModel) -> list[dict[str, Any]]:
    """The other entries of the same uploaded bytes, and what they differ in: registering the
    same model with other labels or options makes another entry, and the answer says which."""
    own = stored.manifest
    others = []
    for entry in store.list():
        theirs = entry.manifest
        if entry.id == stored.id or uploaded_sha256(theirs) != uploaded_sha256(own):
            continue
        differs = {
            key: theirs.get("options", {}).get(key)
            for key in OPTIONS
            if theirs.get("options", {}).get(key) != own.get("options", {}).get(key)
        }
        if entry.labels_bytes() != stored.labels_bytes():
            differs["labels"] = "another labels file"
        others.append({"id": entry.id, "name": theirs.get("name"), "differs": differs})
    return others


def _same(stored: StoredModel, manifest: dict[str, Any], labels: bytes) -> bool:
    """Whether the stored entry is `manifest` (but for when it was made) with these labels."""

    def timeless(entry: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in entry.items() if key != "created"}

    try:
        return timeless(stored.manifest) == timeless(manifest) and stored.labels_bytes() == labels
    except OSError:
        return False
