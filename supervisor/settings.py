"""Typed settings, declared once: each is a field with its type, its default and one line saying
what it does, read from the environment variable of its name in upper case, parsed once at
start and passed down as an object. The README's configuration table is generated from these
declarations (`python -m frontend.settings`; a test keeps the two equal).

This module declares the model workers' and their supervisor's settings, which the worker
service (`python -m supervisor serve`) reads alone; the frontend's (frontend/settings.py) add
their own to these."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


def setting(default: Any, doc: str, shown: str | None = None) -> Any:
    """A declared setting: its default, what it does, and how the default reads in the README
    when it is computed (`shown`)."""
    return dataclasses.field(default=default, metadata={"doc": doc, "shown": shown})


def parse_flag(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a yes/no setting: {raw!r} (use 1 or 0)")


PARSERS = {"int": int, "float": float, "str": str, "bool": parse_flag}


def from_environment(kind: type[T], environ: Mapping[str, str] = os.environ, **overrides: Any) -> T:
    """The settings of dataclass `kind` from `environ` (variables named as the fields, in upper
    case; unset or empty: the default), then `overrides` (by field name, already typed or as
    text). A value that does not parse raises ValueError naming the variable."""
    values = {}
    for field in dataclasses.fields(kind):  # type: ignore[arg-type]
        name = field.name.upper()
        raw = overrides.get(field.name, environ.get(name))
        if raw is None or raw == "":
            continue
        parse = PARSERS[str(field.type)]
        try:
            values[field.name] = parse(raw) if isinstance(raw, str) else parse(str(raw))
        except ValueError as exc:
            raise ValueError(f"{name}={raw!r}: {exc}") from None
    return kind(**values)


def described(kind: type) -> list[tuple[str, str, str]]:
    """(variable, default as the README shows it, what it does) for each setting of `kind`."""
    rows = []
    for field in dataclasses.fields(kind):
        default = field.metadata["shown"]
        if default is None:
            value = field.default
            default = ("1" if value else "0") if isinstance(value, bool) else str(value)
            default = f"`{default}`" if default else "unset"
        rows.append((field.name.upper(), default, field.metadata["doc"]))
    return rows


@dataclass(frozen=True)
class WorkerSettings:
    pool_size: int = setting(
        0,
        "warm workers for the default model per gunicorn process; 0: cores ÷ `WEB_CONCURRENCY`, "
        "at least 1",
    )
    pool_queue_limit: int = setting(
        64, "requests waiting for a worker (per lane and gunicorn process) before 503 `overloaded`"
    )
    upload_pool_size: int = setting(
        1,
        "frames of models other than the default (uploads, registered models) running at once, "
        "per gunicorn process",
    )
    upload_timeout: float = setting(
        30.0,
        "wall-clock seconds per frame of such a model, from when its worker has started; past "
        "it the model is quarantined",
    )
    upload_memory_mb: int = setting(
        2048,
        "memory of their own (not shared libraries) that the warm workers of other models may "
        "use together, spares included; past it the least recently used is stopped",
    )
    upload_spares: int = setting(
        1,
        "spare workers per runtime (LiteRT, TensorFlow) started in advance for models no worker "
        "holds yet",
    )
    quarantine_seconds: float = setting(
        600.0,
        "how long a model that crashed, hung or forged answers is refused (422 `model_crashed`)",
    )
    worker_cache_mb: int = setting(
        1024, "memory budget for loaded models in each warm worker (LRU)"
    )
    default_model_batch_size: int = setting(
        8,
        "single-image requests for the default model that wait while its workers are busy go "
        "to the next free one together, up to this many per frame (1: each alone; "
        "docs/performance.md)",
    )
    batch_max_size: int = setting(
        1,
        "dynamic batching: most images per frame for uploaded models that take any batch size",
        shown="`1` (off)",
    )
    batch_wait_ms: float = setting(
        2.0, "how long the first request of a dynamic batch waits for others"
    )
    worker_timeout: float = setting(
        60.0,
        "wall-clock seconds per frame of the default model (and longest wait for a free "
        "worker, or for a new one to start); the worker's process group is killed after it",
    )
    worker_memory_mb: int = setting(4096, "address-space limit (RLIMIT_AS) of each worker process")
    worker_cpu_seconds: int = setting(
        120,
        "CPU-time limit (RLIMIT_CPU) per frame: a one-shot worker's whole life; a warm worker's "
        "limit moves forward before each frame",
    )
    worker_threads: int = setting(1, "inference threads per worker process")
    solo_threads: int = setting(
        0,
        "inference threads of a frame that starts while no other runs, so that the other cores "
        "are idle (TFLite models; no more than WORKER_THREADS: off)",
        shown="the pool's workers, at most one per core",
    )
    worker_sandbox: str = setting(
        "bwrap", "`bwrap`: every worker runs inside bubblewrap; `none`: rlimits only"
    )
    bwrap_path: str = setting("bwrap", "the bubblewrap executable")
    op_allowlist: bool = setting(
        True, "refuse models whose operations are outside `worker/allowlist.py`"
    )
    allow_unsandboxed_models: bool = setting(
        False, "without a sandbox, accept models other than the default anyway"
    )
    worker_secret_file: str = setting(
        "",
        "file holding the secret the frontend proves it knows to the worker service "
        "(`WORKER_TRANSPORT=tcp`; compose makes one); the service refuses to start without it",
    )
    otel_exporter_otlp_endpoint: str = setting(
        "",
        "OpenTelemetry: when set (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT), each request's spans go "
        "to this OTLP/HTTP collector (`/v1/traces` under it); unset, tracing costs nothing",
    )
    otel_exporter_otlp_traces_endpoint: str = setting(
        "", "OpenTelemetry: the full URL spans are posted to, over the one above"
    )
    otel_service_name: str = setting("mobilenet-service", "OpenTelemetry: the service's name")
    web_concurrency: int = setting(
        0,
        "gunicorn processes (the worker pools share the cores among them)",
        shown="cores ÷ 2, at least 1",
    )

    @property
    def gunicorn_processes(self) -> int:
        """WEB_CONCURRENCY, or one gunicorn process per two cores."""
        return self.web_concurrency or max(1, -(-(os.cpu_count() or 1) // 2))
