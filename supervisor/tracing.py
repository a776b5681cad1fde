"""Tracing with OpenTelemetry, on only when an OTLP endpoint is set (OTEL_EXPORTER_OTLP_ENDPOINT
or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT): spans then go over OTLP/HTTP from the frontend's
processes and the worker service's. Off, nothing of OpenTelemetry is imported and `span()` is a
null context: no cost per request.

A trace crosses processes in the frame header (`trace_parent`, W3C's traceparent): the frontend
puts its span there, and the supervisor that runs the frame, in the frontend's process or in
the worker service, records the wait for a worker and the worker's run as its children. The
worker itself never traces: it opens no connection, inside its sandbox or out."""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from supervisor.settings import WorkerSettings

T = TypeVar("T")
_tracer: Any = None  # an OpenTelemetry tracer once configure() turned tracing on
_propagator: Any = None


def endpoint(settings: WorkerSettings) -> str:
    """Where spans go; "" when tracing is off."""
    if settings.otel_exporter_otlp_traces_endpoint:
        return settings.otel_exporter_otlp_traces_endpoint
    if settings.otel_exporter_otlp_endpoint:
        return settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
    return ""


def configure(settings: WorkerSettings) -> bool:
    """Turn tracing on in this process when an endpoint is set (after gunicorn's fork: the
    exporter's thread is the process's own); whether it is on."""
    global _tracer, _propagator
    url = endpoint(settings)
    if not url or _tracer is not None:
        return _tracer is not None
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.otel_service_name})
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("mobilenet-service")
    _propagator = TraceContextTextMapPropagator()
    return True


def enabled() -> bool:
    return _tracer is not None


def span(
    name: str, parent: str | None = None, **attributes: str | int | float
) -> AbstractContextManager[Any]:
    """A span named `name`, a child of the current span, or of `parent` (a traceparent from a
    frame header) when given; a null context when tracing is off."""
    if _tracer is None:
        return nullcontext()
    context = _propagator.extract({"traceparent": parent}) if parent else None
    return _tracer.start_as_current_span(name, context=context, attributes=attributes)


def traceparent() -> str | None:
    """The current span as a traceparent, for a frame header; None when tracing is off."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def in_context(work: Callable[..., T]) -> Callable[..., T]:
    """`work` bound to a copy of the current context (its span), to run once on another
    thread (an executor's); `work` itself when tracing is off."""
    if _tracer is None:
        return work
    context = contextvars.copy_context()
    return lambda *args: context.run(work, *args)
