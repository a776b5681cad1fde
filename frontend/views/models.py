"""The model registry under /api/v1/models, in the style of TensorFlow Serving's model
resources: register, list, describe, rename, delete, and classify. A model is named in a path
by its id or its name."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from frontend import auth, forms
from frontend.errors import InvalidField, MissingField
from frontend.registry import other_registrations
from frontend.service import get_service
from frontend.store import StoredModel

bp = Blueprint("models", __name__, url_prefix="/api/v1/models")


def _public(stored: StoredModel) -> dict[str, Any]:
    return {**stored.manifest, "default": get_service().is_default(stored.id)}


@bp.post("")
@auth.admin
def register() -> tuple[Response, int]:
    model, labels = request.files.get("model"), request.files.get("labels")
    if model is None or labels is None:
        raise MissingField("register with multipart fields 'model' and 'labels'")
    registered = get_service().register(
        model.read(),
        labels.read(),
        client=request.remote_addr or "",
        name=request.values.get("name") or None,
        filename=model.filename or "",
        input_tensor=request.values.get("input_tensor") or None,
        output_tensor=request.values.get("output_tensor") or None,
        normalization=forms.normalization(request),
        input_size=forms.input_size(request),
        preprocessing=forms.preprocessing(request),
    )
    answer = _public(registered.stored)
    if registered.renamed_from is not None:  # the same model again, under another name
        answer["renamed_from"] = registered.renamed_from
    others = other_registrations(get_service().store, registered.stored)
    if others:  # the same bytes registered with other labels or options: say so
        answer["other_registrations"] = others
    return jsonify(answer), 201 if registered.created else 200


@bp.get("")
@auth.api
def list_models() -> Response:
    service = get_service()
    service.default_model()  # so the default is listed even before its first use
    return jsonify({"models": [_public(m) for m in service.store.list()]})


@bp.get("/<key>")
@auth.api
def describe(key: str) -> Response:
    return jsonify(_public(get_service().stored(key)))


@bp.patch("/<key>")
@auth.admin
def rename(key: str) -> Response:
    """{"name": ...} as JSON or a form field: the model's new name."""
    body = request.get_json(silent=True) if request.is_json else request.values
    name = body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidField('rename with {"name": "<new name>"} (JSON) or a form field name')
    stored, old_name = get_service().rename(key, name)
    return jsonify({**_public(stored), "renamed_from": old_name})


@bp.delete("/<key>")
@auth.admin
def delete(key: str) -> Response:
    return jsonify({"deleted": get_service().delete(key)})


@bp.post("/<key>/classify")
@auth.api
def classify(key: str) -> Response:
    service = get_service()
    result = service.classify(
        forms.image_bytes(request, "image"),
        service.model(key),
        forms.normalization(request),
        forms.top_k(request, service.config["DEFAULT_TOP_K"]),
        client=request.remote_addr or "",
    )
    return jsonify(result.to_dict())
