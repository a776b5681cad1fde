"""The per-app service object: the default model, the worker transport and the settings they
need, created once by the application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask, current_app

from frontend.classify import Classification, classify_image
from frontend.models import ModelSource, load_default_model, require_default
from frontend.transport import make_transport
from protocol import Normalization


class Service:
    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.default_model = load_default_model(config)
        self.transport = make_transport(config)

    def classify(
        self,
        image: bytes,
        model: ModelSource | None,
        normalization: Normalization,
        top_k: int,
    ) -> Classification:
        return classify_image(
            image,
            model or require_default(self.default_model, self.config),
            self.transport,
            size=self.config["INPUT_SIZE"],
            normalization=normalization,
            top_k=top_k,
            max_pixels=self.config["MAX_IMAGE_PIXELS"],
        )


def init_app(app: Flask) -> None:
    app.extensions["mobilenet"] = Service(app.config)


def get_service() -> Service:
    return current_app.extensions["mobilenet"]
