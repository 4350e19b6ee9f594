"""A revoked key is refused from the next request on, by every worker (each holds valid keys in memory)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.process


def test_revocation_reaches_every_worker_at_once(service):
    new = json.loads(service.cli("keys", "create", "--name", "soon-revoked", "--scope", "consents:read"))
    # Enough calls that both workers have the key in memory.
    assert all(service.call("GET", "/v1/purposes", key=new["key"])[0] == 200 for _ in range(20))
    service.cli("keys", "revoke", new["id"])
    after = [service.call("GET", "/v1/purposes", key=new["key"])[0] for _ in range(20)]
    assert after == [401] * 20
