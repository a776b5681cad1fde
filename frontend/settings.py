"""The frontend's settings: the workers' (supervisor/settings.py) and its own, each declared
once with its type, default and what it does, read from the environment once and passed down.
`create_app(test_config)` overrides them for tests.

    python -m frontend.settings    # the README's configuration table, from these declarations
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.settings import WorkerSettings, described, from_environment, setting

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings(WorkerSettings):
    model_dir: str = setting(
        str(PROJECT_ROOT / "models"),
        "where `make models` puts models and the frontend finds the default",
        shown="`./models`",
    )
    default_model: str = setting(
        "mobilenet_v2_1.0_224_quant.tflite", "default model file in `MODEL_DIR`"
    )
    default_labels: str = setting("imagenet_labels.txt", "its labels")
    model_store: str = setting(
        str(PROJECT_ROOT / "model-store"),
        "registered models (the default model is registered there on first use)",
        shown="`./model-store`",
    )
    max_model_bytes: int = setting(
        100 * 1024 * 1024, "largest model that can be registered; over it: 413"
    )
    store_max_models: int = setting(200, "registered models the store may hold (507 `store_full`)")
    store_max_bytes: int = setting(
        2 * 1024 * 1024 * 1024, "bytes of model files the store may hold (507 `store_full`)"
    )
    store_share_models: int = setting(
        20, "registered models one client address may hold in the store (507 `store_share_full`)"
    )
    store_share_bytes: int = setting(
        256 * 1024 * 1024,
        "bytes of model files one client address may hold in the store (507 `store_share_full`)",
    )
    registrations_per_hour: int = setting(
        30, "registration requests per client address and hour, across all processes (429)"
    )
    input_size: int = setting(
        224,
        "pixels per side for a stored model whose manifest gives no size (registered before "
        "sizes were found); every model prepared now has its own",
    )
    max_images_per_call: int = setting(
        64,
        "images in one classify call (several `image` parts, a V2 or TF Serving batch), and "
        "classifications in one explanation; over it: 413",
    )
    max_json_bytes: int = setting(
        16 * 1024 * 1024, "JSON bodies of `/v2` (its JSON header) and `/v1/models`; over it: 413"
    )
    default_top_k: int = setting(5, "predictions returned when `top_k` is not given (1 to 100)")
    worker_transport: str = setting(
        "pool",
        "`pool`: warm workers; `process`: a fresh local worker per request; `tcp`: the worker "
        "service",
    )
    worker_address: str = setting("127.0.0.1:9000", "`host:port` of the worker service (`tcp`)")
    allowed_hosts: str = setting(
        "",
        "names (comma-separated; `*`: any) browsers may reach the service by, besides IP "
        "addresses, `localhost` and this machine's own names; others get 421 (DNS rebinding)",
    )
    uploads_per_client: int = setting(
        2, "uploaded or registered models one client address may have running at once (429)"
    )
    max_content_length: int = setting(
        128 * 1024 * 1024, "bytes per HTTP request (model uploads included); over it: 413"
    )
    max_image_pixels: int = setting(
        25_000_000,
        "largest image (width x height, read from its header before decoding); larger ones get 400",
    )
    large_decodes: int = setting(2, "images over 4 MP decoded at once per gunicorn process")
    decode_pixels_per_call: int = setting(
        256_000_000,
        "pixels a call's images may decode to, read from their headers before any is decoded (413)",
    )
    work_per_client: int = setting(
        256,
        "classifications one client's calls may have running at once, per gunicorn process: an "
        "image is 1, an explanation 1 + grid² (429)",
    )
    decode_pixels_per_client: int = setting(
        256_000_000,
        "pixels one client's calls may be decoding at once, per gunicorn process (429)",
    )
    ready_check_seconds: float = setting(10.0, "`/readyz` answers from a check at most this old")
    access_log: str = setting(
        "-",
        "where the access log goes (a path, `-` or `off`); behind nginx, nginx writes it "
        "(buffered, at most 1 s late) and gunicorn's is off",
        shown="`-` (stdout)",
    )
    front_proxy: str = setting(
        "nginx", "`python -m frontend` (`make run`, compose): nginx in front of gunicorn, or `none`"
    )
    trusted_proxy_hops: int = setting(
        0,
        "proxies whose `X-Forwarded-For` names the client (`python -m frontend` sets 1 for its "
        "nginx)",
    )
    port: int = setting(
        8080, "where the service listens (`make run PORT=9090`; compose: the published port)"
    )
    bind: str = setting(
        "", "the address gunicorn, or nginx in front of it, listens on", shown="`0.0.0.0:$PORT`"
    )
    admin_token: str = setting("", "bearer token for registering, renaming and deleting models")
    api_token: str = setting("", "bearer token for classifying and reading the registry")
    gunicorn_threads: int = setting(
        16,
        "threads per gunicorn process: requests mostly wait on workers, and the more of them "
        "wait, the more share a frame",
    )
    batch_scheduling: bool = setting(
        True,
        "nginx and gunicorn run under Linux's `SCHED_BATCH` policy, so that they preempt the "
        "model workers (normal policy) less often; 0: the normal policy",
    )
    gunicorn_keepalive: int = setting(
        2,
        "seconds gunicorn keeps an idle connection (`python -m frontend` sets more than nginx's, "
        "so that nginx closes them)",
    )
    prometheus_multiproc_dir: str = setting(
        "",
        "where gunicorn's processes keep metric samples for `/metrics`",
        shown="a fresh temporary folder",
    )
    model_mirror: str = setting(
        "",
        "`make models` (and compose's `models` service): copy files from this folder when it "
        "holds them, else download",
        shown="`../shared/models` if present",
    )
    model_url_base: str = setting("", "`make models`: fetch every file from this base URL instead")

    @property
    def listen(self) -> str:
        return self.bind or f"0.0.0.0:{self.port}"


def load(
    environ: Mapping[str, str] = os.environ, overrides: Mapping[str, Any] | None = None
) -> Settings:
    """The settings from `environ`, then `overrides` by variable name (a test's config)."""
    given = {name.lower(): value for name, value in (overrides or {}).items()}
    return from_environment(Settings, environ, **given)


def table() -> str:
    """The README's configuration table: the frontend's own settings first, then the workers'."""
    own = {field.name for field in dataclasses.fields(WorkerSettings)}
    rows = described(Settings)
    ordered = sorted(rows, key=lambda row: row[0].lower() in own)  # stable: own first
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    lines += [f"| `{name}` | {default} | {doc} |" for name, default, doc in ordered]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(), end="")
