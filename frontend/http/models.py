"""The model registry under /api/v1/models, in the style of TensorFlow Serving's model
resources: register, list, describe, rename, delete, and classify. A model is named in a path
by its id or its name."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from frontend.dataplane.manifest import Manifest
from frontend.dataplane.models import uploaded_model
from frontend.dataplane.preparation import other_registrations
from frontend.errors import InvalidField, MissingField
from frontend.http import auth, classify_one, forms, plane
from frontend.store import StoredModel

bp = Blueprint("models", __name__, url_prefix="/api/v1/models")


def _public(stored: StoredModel) -> dict[str, Any]:
    """A model's manifest as the API answers it, and whether it is the default."""
    manifest = Manifest.from_dict(stored.manifest)
    return {**manifest.to_dict(), "default": plane().is_default(stored.id)}


@bp.post("")
@auth.admin
def register() -> tuple[Response, int]:
    model, labels = request.files.get("model"), request.files.get("labels")
    if model is None or labels is None:
        raise MissingField("register with multipart fields 'model' and 'labels'")
    label_bytes = labels.read()
    upload = uploaded_model(
        model.filename or "model", model.read(), label_bytes, forms.options(request)
    )
    registered = plane().register(
        upload,
        label_bytes,
        request.values.get("name") or None,
        model.filename or "",
        forms.client(request),
    )
    answer = _public(registered.stored)
    if registered.renamed_from is not None:  # the same model again, under another name
        answer["renamed_from"] = registered.renamed_from
    others = other_registrations(plane().catalog, registered.stored)
    if others:  # the same bytes registered with other labels or options: say so
        answer["other_registrations"] = others
    return jsonify(answer), 201 if registered.created else 200


@bp.get("")
@auth.api
def list_models() -> Response:
    plane().default_model()  # so the default is listed even before its first use
    return jsonify({"models": [_public(m) for m in plane().catalog.store.list()]})


@bp.get("/<key>")
@auth.api
def describe(key: str) -> Response:
    model = plane().model(key)
    assert model.manifest is not None  # a stored model's
    return jsonify({**model.manifest.to_dict(), "default": model.origin == "default"})


@bp.patch("/<key>")
@auth.admin
def rename(key: str) -> Response:
    """{"name": ...} as JSON or a form field: the model's new name."""
    body = request.get_json(silent=True) if request.is_json else request.values
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidField('rename with {"name": "<new name>"} (JSON) or a form field name')
    stored, old_name = plane().rename(key, name)
    return jsonify({**_public(stored), "renamed_from": old_name})


@bp.delete("/<key>")
@auth.admin
def delete(key: str) -> Response:
    return jsonify({"deleted": plane().delete(key)})


@bp.post("/<key>/classify")
@auth.api
def classify(key: str) -> Response:
    result = classify_one(
        forms.image_bytes(request, "image"),
        plane().model(key),
        forms.top_k(request, plane().settings.default_top_k),
        forms.client(request),
        forms.normalization(request),
    )
    return jsonify(result.to_dict())
