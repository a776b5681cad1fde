"""The model registry under /api/v1/models, in the style of TensorFlow Serving's model
resources: register, list, describe, delete, and classify by id."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request

from frontend import auth, forms
from frontend.errors import MissingField
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
    normalization = forms.normalization(request)
    stored, created = get_service().register(
        model.read(),
        labels.read(),
        client=request.remote_addr or "",
        name=request.values.get("name") or model.filename or "model",
        input_tensor=request.values.get("input_tensor") or None,
        output_tensor=request.values.get("output_tensor") or None,
        normalization=normalization,
        input_size=forms.input_size(request),
    )
    answer = _public(stored)
    others = other_registrations(get_service().store, stored)
    if others:  # the same bytes registered with other labels or options: say so
        answer["other_registrations"] = others
    return jsonify(answer), 201 if created else 200


@bp.get("")
@auth.api
def list_models() -> Response:
    service = get_service()
    service.default_model()  # so the default is listed even before its first use
    return jsonify({"models": [_public(m) for m in service.store.list()]})


@bp.get("/<model_id>")
@auth.api
def describe(model_id: str) -> Response:
    return jsonify(_public(get_service().stored(model_id)))


@bp.delete("/<model_id>")
@auth.admin
def delete(model_id: str) -> Response:
    get_service().delete(model_id)
    return jsonify({"deleted": model_id})


@bp.post("/<model_id>/classify")
@auth.api
def classify(model_id: str) -> Response:
    service = get_service()
    result = service.classify(
        forms.image_bytes(request, "image"),
        service.resolve(None, model_id),
        forms.normalization(request),
        forms.top_k(request, service.config["DEFAULT_TOP_K"]),
        client=request.remote_addr or "",
    )
    return jsonify(result.to_dict())
