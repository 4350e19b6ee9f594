"""OpenTelemetry: one tracer and one meter provider per process; OTLP export only when OTEL_* asks for it.

Attributes are route templates, methods, status codes and reason codes: never an identifier value.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SimpleSpanProcessor

log = logging.getLogger("consent_svc.telemetry")

_configured: tuple[TracerProvider, MeterProvider] | None = None


def _otlp_wanted(signal: str) -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"))


def configure(
    span_exporter: SpanExporter | None = None, metric_reader: MetricReader | None = None
) -> tuple[TracerProvider, MeterProvider]:
    """The process's providers, made on first call (tests pass in-memory exporters before any app starts)."""
    global _configured
    if _configured is not None:
        return _configured
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", "consent-svc")})
    tracer_provider = TracerProvider(resource=resource)
    readers: list[MetricReader] = []
    if span_exporter is not None:
        tracer_provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    if metric_reader is not None:
        readers.append(metric_reader)
    if _otlp_wanted("TRACES"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if _otlp_wanted("METRICS"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers)
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)

    from opentelemetry.instrumentation.asyncpg import AsyncPGInstrumentor

    # Spans carry the SQL text (constants with $n placeholders), never the parameters.
    AsyncPGInstrumentor(capture_parameters=False).instrument(tracer_provider=tracer_provider)
    _configured = (tracer_provider, meter_provider)
    return _configured
