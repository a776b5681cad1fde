"""Classifying without a server: the service's own data plane (frontend/dataplane) with workers
started here, sandboxed as the server's are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frontend.dataplane import DataPlane
from frontend.dataplane.models import ModelSource, uploaded_model
from frontend.dataplane.runner import transport_for
from frontend.settings import load
from protocol import ServiceError, describe_request


class LocalClassifier:
    def __init__(self) -> None:
        # One model per run: no spare workers for models it will never switch to.
        settings = load(overrides={"UPLOAD_SPARES": 0})
        transport = transport_for(settings, settings.worker_transport, settings.worker_address)
        self.plane = DataPlane(settings, transport)
        self.model: ModelSource | None = None

    def use_model(self, model: str | None, labels: Path | None) -> str:
        upload = None
        if model is not None and Path(model).is_file():
            path = Path(model)
            assert labels is not None, "a model file comes with its labels"
            upload = uploaded_model(path.name, path.read_bytes(), labels.read_bytes())
        self.model = self.plane.requested(upload, model if upload is None else None, "")
        if self.model.origin == "default":  # start its workers now, while the user waits
            self.plane.transport.preload(describe_request(self.model.blob, self.model.sha256))
        return self.model.id or self.model.name

    def classify(self, images: list[tuple[str, bytes]], top_k: int) -> list[dict[str, Any]]:
        assert self.model is not None, "use_model first"
        results = self.plane.classify([data for _, data in images], self.model, top_k, "")
        return [
            {"error": r.to_dict()} if isinstance(r, ServiceError) else r.to_dict() for r in results
        ]

    def close(self) -> None:
        self.plane.close()
