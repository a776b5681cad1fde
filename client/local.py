"""Classifying without a server: the service's own model resolution and classification
(frontend/service.py) with workers started here, sandboxed as the server's are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from frontend.config import from_environment
from frontend.models import ModelSource, uploaded_model
from frontend.registry import describe_request
from frontend.service import Service
from protocol import Normalization, ServiceError


class LocalClassifier:
    def __init__(self) -> None:
        # One model per run: no spare workers for models it will never switch to.
        self.service = Service({**from_environment(), "UPLOAD_SPARES": 0})
        self.model: ModelSource | None = None

    def use_model(self, model: str | None, labels: Path | None) -> str:
        if model is not None and Path(model).is_file():
            path = Path(model)
            assert labels is not None, "a model file comes with its labels"
            upload = uploaded_model(path.name, path.read_bytes(), labels.read_bytes())
            self.model = self.service.resolve(upload, None)
        else:
            self.model = self.service.resolve(None, model)
        if self.model.origin == "default":  # start its workers now, while the user waits
            self.service.transport.preload(describe_request(self.model))
        return self.model.describe()["id"] or self.model.name

    def classify(self, images: list[tuple[str, bytes]], top_k: int) -> list[dict[str, Any]]:
        assert self.model is not None, "use_model first"
        results = self.service.classify_many(
            [data for _, data in images], self.model, Normalization(), top_k
        )
        return [
            {"error": r.to_dict()} if isinstance(r, ServiceError) else r.to_dict() for r in results
        ]

    def close(self) -> None:
        self.service.transport.close()
