"""The `make run` path: no DATABASE_URL, an embedded PostgreSQL and generated secrets under the data directory."""

from __future__ import annotations

import subprocess

import pytest

from tests.consents.helpers import batch, record
from tests.process.service import Service

pytestmark = pytest.mark.process

EMAIL = "embedded.Probe@Example.com"


def test_embedded_server_keeps_data_across_restarts_and_nothing_in_clear(tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    svc = Service({}, data_dir)
    try:
        svc.start(timeout=120)
        key = svc.key("admin")
        status, body = svc.call(
            "POST", "/v1/consents", batch(record(EMAIL, proof={"ip": "198.51.100.23"})), key=key
        )
        assert status == 201
        subject_id = body["records"][0]["subject_id"]
        svc.stop()

        for name in ("master_key.b64", "lookup_secret.b64"):
            assert (data_dir / "secrets" / name).stat().st_mode & 0o777 == 0o600

        svc.start(timeout=120)
        status, body = svc.call(
            "POST", "/v1/subjects/lookup", {"identifiers": [{"type": "email", "value": EMAIL}]}, key=key
        )
        assert (status, body) == (200, {"subject_id": subject_id})
        svc.cli("keys", "list")  # a CLI command while the service runs shares its server
        status, _ = svc.call("GET", f"/v1/subjects/{subject_id}", key=key)
        assert status == 200
    finally:
        svc.stop()
    # Heap, WAL and logs: neither the identifier nor the proof appears in clear anywhere under the data dir.
    for needle in (EMAIL.lower(), "198.51.100.23"):
        found = subprocess.run(
            ["grep", "-rIl", "--binary-files=text", "-i", needle, str(data_dir)],
            capture_output=True,
            text=True,
        )
        assert found.stdout == "", found.stdout
