"""The upload page (GET /) and the seed-compatible POST /infer."""

from __future__ import annotations

from contextlib import suppress

from flask import Blueprint, Response, render_template, request
from markupsafe import Markup, escape

from frontend.dataplane.manifest import Manifest
from frontend.http import auth, classify_one, forms, plane
from protocol import ServiceError

bp = Blueprint("page", __name__)


def _model_choices() -> list[Manifest]:
    """Stored models for the picker, the default first (registered here on first use); none
    when listing them needs a token this request does not carry (the page's script then lists
    them with the token the visitor types)."""
    if not auth.accepts("API_TOKEN", "ADMIN_TOKEN"):
        return []
    with suppress(ServiceError):
        plane().default_model()
    models = [Manifest.from_dict(m.manifest) for m in plane().catalog.store.list()]
    return sorted(models, key=lambda m: not plane().is_default(m.id))


# Every model file the API takes, for the pickers.
MODEL_TYPES = ".tflite,.lite,.pb,.h5,.hdf5,.keras,.zip,.tar.gz,.tgz"


def _page(**context) -> str:
    settings = plane().settings
    return render_template(
        "index.html",
        models=_model_choices(),
        token_required=bool(settings.api_token),
        admin_token=bool(settings.admin_token),
        model_types=MODEL_TYPES,
        **context,
    )


@bp.get("/")
def index() -> str:
    return _page(result=None, error=None)


@bp.post("/infer")
@auth.api
def infer() -> Response | tuple[str, int] | str:
    """The seed's answer sentence; the page's no-JavaScript form (view=page) gets the page."""
    as_page = request.values.get("view") == "page"
    try:
        result = classify_one(
            forms.image_bytes(request, "image_file"),
            forms.requested_model(request),
            plane().settings.default_top_k,
            forms.client(request),
            forms.normalization(request),
        )
    except ServiceError as exc:
        if not as_page:
            raise
        return _page(result=None, error=exc.to_dict()), exc.status
    if as_page:
        return _page(result=result.to_dict(), error=None)
    best = result.predictions[0]
    # The label comes from a user's file: escape() keeps a <script> in it inert.
    return Markup("Detected <b>{}</b> with <u>{}</u> confidence.").format(
        escape(best.label), result.confidence
    )
