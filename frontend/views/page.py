"""The upload page (GET /) and the seed-compatible POST /infer."""

from __future__ import annotations

from contextlib import suppress

from flask import Blueprint, Response, render_template, request
from markupsafe import Markup, escape

from frontend import auth, forms
from frontend.service import get_service
from protocol import ServiceError

bp = Blueprint("page", __name__)


def _model_choices() -> list[dict]:
    """Stored models for the picker, the default first (registered here on first use)."""
    service = get_service()
    with suppress(ServiceError):
        service.default_model()
    models = [m.manifest for m in service.store.list()]
    return sorted(models, key=lambda m: not service.is_default(m["id"]))


@bp.get("/")
def index() -> str:
    return render_template("index.html", result=None, error=None, models=_model_choices())


@bp.post("/infer")
@auth.api
def infer() -> Response | tuple[str, int] | str:
    """The seed's answer sentence; the page's no-JavaScript form (view=page) gets the page."""
    service = get_service()
    as_page = request.values.get("view") == "page"
    try:
        result = service.classify(
            forms.image_bytes(request, "image_file"),
            service.resolve(forms.model_upload(request), request.values.get("model")),
            forms.normalization(request),
            service.config["DEFAULT_TOP_K"],
            client=request.remote_addr or "",
        )
    except ServiceError as exc:
        if not as_page:
            raise
        return render_template(
            "index.html", result=None, error=exc.to_dict(), models=_model_choices()
        ), exc.status
    if as_page:
        return render_template(
            "index.html", result=result.to_dict(), error=None, models=_model_choices()
        )
    best = result.predictions[0]
    # The label comes from a user's file: escape() keeps a <script> in it inert.
    return Markup("Detected <b>{}</b> with <u>{}</u> confidence.").format(
        escape(best.label), result.confidence
    )
