"""A revoked key is refused from the next request on, by every worker (each holds valid keys in memory)."""

from __future__ import annotations

import pytest

from tests.conftest import LOOKUP_SECRET, MASTER_KEY
from tests.process.service import Service

pytestmark = pytest.mark.process


def test_revocation_reaches_every_worker_at_once(db_url, tmp_path):
    svc = Service(
        {
            "DATABASE_URL": db_url,
            "CONSENT_SVC_MASTER_KEY": MASTER_KEY,
            "CONSENT_SVC_LOOKUP_SECRET": LOOKUP_SECRET,
        },
        tmp_path,
        workers=2,
    )
    try:
        svc.start()
        import json

        new = json.loads(svc.cli("keys", "create", "--name", "soon-revoked", "--scope", "consents:read"))
        # Enough calls that both workers have the key in memory.
        assert all(svc.call("GET", "/v1/purposes", key=new["key"])[0] == 200 for _ in range(20))
        svc.cli("keys", "revoke", new["id"])
        after = [svc.call("GET", "/v1/purposes", key=new["key"])[0] for _ in range(20)]
        assert after == [401] * 20
    finally:
        svc.stop()
