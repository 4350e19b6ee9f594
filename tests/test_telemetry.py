"""Traces and metrics are produced, and never carry an identifier value."""

from __future__ import annotations

import json

from tests.conftest import METRICS, SPANS
from tests.consents.helpers import batch, record

EMAIL = "Telemetry.Probe@Example.com"
PHONE = "+14155550177"


def _exported_text() -> str:
    spans = [json.loads(span.to_json()) for span in SPANS.get_finished_spans()]
    metrics = METRICS.get_metrics_data()
    return json.dumps(spans) + (metrics.to_json() if metrics else "")


async def test_requests_and_queries_are_traced_and_measured_without_identifiers(client, admin, caplog):
    SPANS.clear()
    caplog.set_level("DEBUG")
    response = await client.post(
        "/v1/consents",
        json=batch(
            record(EMAIL), record(identifiers=[{"type": "phone", "value": PHONE}], purpose="sms_marketing")
        ),
        headers=admin,
    )
    assert response.status_code == 201
    lookup = await client.post(
        "/v1/subjects/lookup", json={"identifiers": [{"type": "email", "value": EMAIL}]}, headers=admin
    )
    subject_id = lookup.json()["subject_id"]
    await client.get(f"/v1/subjects/{subject_id}", headers=admin)
    await client.post("/v1/consents", json=batch(record(EMAIL, purpose="telepathy")), headers=admin)

    spans = SPANS.get_finished_spans()
    names = {span.name for span in spans}
    assert any("/v1/consents" in name for name in names), names
    assert any(span.attributes.get("db.system") == "postgresql" for span in spans)
    routes = {}
    for rm in METRICS.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                routes[m.name] = {p.attributes.get("http.route") for p in m.data.data_points}
    # Per endpoint, by route template: a subject id never becomes a label.
    for name in ("http.server.request.duration", "consent_svc.http.requests"):
        assert {"/v1/consents", "/v1/subjects/lookup", "/v1/subjects/{subject_id}"} <= routes[name], routes
    assert any(span.name == "GET /v1/subjects/{subject_id}" for span in spans)
    server_spans = [span for span in spans if "http.route" in span.attributes]
    assert server_spans and all(span.attributes.get("client.address") == "redacted" for span in server_spans)
    assert all(span.attributes.get("user_agent.original") in (None, "redacted") for span in spans)

    text = _exported_text().lower() + caplog.text.lower()
    for secret in (EMAIL.lower(), "telemetry.probe", PHONE, "4155550177"):
        assert secret not in text


def test_otlp_export_reaches_the_endpoint_only_when_asked():
    """A local OTLP/HTTP receiver: with the endpoint set, spans and metrics arrive; without it, the log says off."""
    import http.server
    import os
    import subprocess
    import sys
    import threading

    received: list[str] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers["Content-Length"]))
            received.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    code = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from consent_svc import telemetry\n"
        "tracer_provider, meter_provider, _ = telemetry.configure()\n"
        "with tracer_provider.get_tracer('t').start_as_current_span('probe'): pass\n"
        "meter_provider.get_meter('t').create_counter('probe').add(1)\n"
        "tracer_provider.force_flush(); meter_provider.force_flush()\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    try:
        off = subprocess.run(
            [sys.executable, "-c", code], env=clean, capture_output=True, text=True, check=True
        )
        assert "OTLP export: off" in off.stderr and received == []
        endpoint = f"http://127.0.0.1:{server.server_port}"
        on = subprocess.run(
            [sys.executable, "-c", code],
            env={**clean, "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint},
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        assert "OTLP export: traces, metrics" in on.stderr
        assert sorted(set(received)) == ["/v1/metrics", "/v1/traces"]
    finally:
        server.shutdown()
