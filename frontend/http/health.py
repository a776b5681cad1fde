"""Liveness (/healthz: the process answers) and readiness (/readyz: the default model is
present and a worker ran it on a probe image within the last READY_CHECK_SECONDS). A flood of
/readyz therefore costs at most one classification per interval, not one per call. A model is
ready when the server is and, for a model other than the default, when the sandbox that runs
it is there (the serving protocols' model readiness)."""

from __future__ import annotations

import io

from flask import Blueprint, Response, jsonify
from PIL import Image

from frontend.dataplane import runs_untrusted_models
from frontend.dataplane.models import ModelSource
from frontend.http import classify_one, plane
from protocol import ServiceError

bp = Blueprint("health", __name__)


def _probe_image() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def check_ready() -> tuple[dict, int]:
    try:
        result = classify_one(_probe_image(), plane().model("default"), 1, "")
    except ServiceError as exc:
        return {"status": "not ready", "error": exc.to_dict()}, 503
    return {
        "status": "ready",
        "model": result.model.describe(),
        "worker_ms": result.timings_ms["worker"],
    }, 200


@bp.get("/readyz")
def readyz() -> tuple[Response, int]:
    (body, status), age = plane().readiness.answer(check_ready)
    return jsonify({**body, "checked_seconds_ago": round(age, 1)}), status


def is_model_ready(model: ModelSource) -> bool:
    (_, status), _ = plane().readiness.answer(check_ready)
    return status == 200 and (model.origin == "default" or runs_untrusted_models(plane()))
