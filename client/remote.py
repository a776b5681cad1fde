"""Classifying through a running server's JSON API: several images per call."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from client.multipart import encode_multipart


class ServerError(Exception):
    """The server refused a call that is not about one image (the model, the token, limits)."""


RETRIES = 5


def _detail(error: urllib.error.HTTPError) -> str:
    try:
        body = json.load(error)["error"]
        return f"{body['code']}: {body['message']}"
    except (ValueError, KeyError, TypeError):
        return str(error.reason)


def _retry_after(error: urllib.error.HTTPError, attempt: int) -> float:
    try:
        return min(float(error.headers.get("Retry-After", "")), 30.0)
    except ValueError:
        return min(0.5 * 2**attempt, 30.0)


class RemoteClassifier:
    def __init__(self, url: str, token: str | None = None, timeout: float = 300) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.model_id: str | None = None

    def _post(self, path: str, body: bytes, content_type: str) -> dict[str, Any]:
        return self._call("POST", path, body, {"Content-Type": content_type})

    def _call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """The JSON answer; a busy server (429, 503) is asked again after its Retry-After."""
        headers = dict(headers or {})
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        for attempt in range(RETRIES + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.load(response)
            except urllib.error.HTTPError as exc:
                if exc.code not in (429, 503) or attempt == RETRIES:
                    raise ServerError(f"{path}: HTTP {exc.code} {_detail(exc)}") from None
                time.sleep(_retry_after(exc, attempt))
            except (urllib.error.URLError, OSError) as exc:
                raise ServerError(f"cannot reach {self.url}: {exc}") from None
        raise AssertionError("unreachable")

    def use_model(self, model: str | None, labels: Path | None) -> str:
        """An id or a name as it is, once the server says it has it; a model file registered
        first (with its labels). Returns what the answers will be labelled with."""
        if model is None:
            return "default"
        path = Path(model)
        if not path.is_file():
            self._call("GET", "/api/v1/models/" + urllib.parse.quote(model, safe=""))
            self.model_id = model
            return model
        assert labels is not None, "a model file comes with its labels"
        body, content_type = encode_multipart(  # named after the file, as the server makes it
            {},
            [("model", path.name, path.read_bytes()), ("labels", labels.name, labels.read_bytes())],
        )
        self.model_id = self._post("/api/v1/models", body, content_type)["id"]
        return self.model_id

    def classify(self, images: list[tuple[str, bytes]], top_k: int) -> list[dict[str, Any]]:
        """One answer per image, in order: the API's answer or {"error": ...}."""
        fields = {"top_k": str(top_k)}
        if self.model_id:
            fields["model"] = self.model_id
        body, content_type = encode_multipart(
            fields, [("images", name, data) for name, data in images]
        )
        answer = self._post("/api/v1/classify", body, content_type)
        return answer["results"]

    def close(self) -> None:
        pass
