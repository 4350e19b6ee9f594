"""OpenTelemetry: one tracer and one meter provider per process; OTLP export only when OTEL_* asks for it.

Attributes are route templates, methods, status codes and reason codes: never an identifier value.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

from litestar.exceptions import HTTPException
from litestar.utils import normalize_path
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

log = logging.getLogger("consent_svc.telemetry")


class Telemetry(NamedTuple):
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    exported: bool
    """Something reads the signals (OTLP, or a test's in-memory exporter). When nothing does, the app installs
    no tracing middleware: spans and metrics nobody receives cost two thirds of a trivial request's
    throughput (bench/check.py, closing note of issue 4)."""


_configured: Telemetry | None = None


def _otlp_wanted(signal: str) -> bool:
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def configure(
    span_exporter: SpanExporter | None = None, metric_reader: MetricReader | None = None
) -> Telemetry:
    """The process's providers, made on first call (tests pass in-memory exporters before any app starts)."""
    global _configured
    if _configured is not None:
        return _configured
    # Stable HTTP semantic conventions: duration histograms labelled by route template, not by URL.
    os.environ.setdefault("OTEL_SEMCONV_STABILITY_OPT_IN", "http")
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "consent-svc")})
    tracer_provider = TracerProvider(resource=resource)
    readers: list[MetricReader] = [metric_reader] if metric_reader is not None else []
    if span_exporter is not None:
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    otlp: list[str] = []
    if _otlp_wanted("TRACES"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        otlp.append("traces")
    if _otlp_wanted("METRICS"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
        otlp.append("metrics")
    log.info("OTLP export: %s", ", ".join(otlp) or "off")
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)

    exported = bool(otlp) or span_exporter is not None or metric_reader is not None
    if exported:
        from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

        # Spans carry the SQL text (constants with $n placeholders), never the parameters.
        AsyncPGInstrumentor(capture_parameters=False).instrument(tracer_provider=tracer_provider)
    _configured = Telemetry(tracer_provider, meter_provider, exported)
    return _configured


def route_of(scope) -> tuple[str, dict[str, str]]:
    """Span name and route label from the route template (`/v1/subjects/{subject_id}`), never the raw path."""
    method = str(scope.get("method", "")).strip()
    route = scope.get("path_template")
    if route is None:  # the tracing middleware runs before routing: ask the router (it caches)
        try:
            route = scope["app"].asgi_router.handle_routing(
                path=normalize_path(scope["path"]), method=method
            )[4]
        except HTTPException:
            route = "unmatched"
    name = f"{method} {route}" if method else route
    return name, {"http.route": route}


# Who called, from where: for the public endpoints to come, a person's IP address and browser.
CALLER_ATTRIBUTES = ("client.address", "client.port", "user_agent.original", "net.peer.ip", "http.user_agent")


def redact_caller(span, scope) -> None:  # noqa: ANN001 - OpenTelemetry's server request hook
    """Spans keep the route, method and status, never the caller's address or user agent."""
    if span.is_recording():
        for name in CALLER_ATTRIBUTES:
            span.set_attribute(name, "redacted")


class RequestCounter:
    """ASGI middleware: one counter per route template, method and status code."""

    def __init__(self, app) -> None:
        self.app = app
        self.counter = metrics.get_meter("consent_svc").create_counter(
            "consent_svc.http.requests",
            unit="{request}",
            description="Requests answered, by route and status",
        )

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def record_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            _, attributes = route_of(scope)
            self.counter.add(
                1, {**attributes, "http.request.method": scope["method"], "http.response.status_code": status}
            )
