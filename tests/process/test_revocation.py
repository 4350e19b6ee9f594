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


def test_keys_never_reach_the_log_even_at_debug(db_url, tmp_path):
    from tests.process.service import running

    with running(db_url, tmp_path, workers=1, CONSENT_SVC_LOG_LEVEL="DEBUG") as service:
        new = json.loads(service.cli("keys", "create", "--name", "logged?", "--scope", "consents:read"))
        assert service.call("GET", "/v1/purposes", key=new["key"])[0] == 200
        assert service.call("GET", "/v1/purposes", key=new["key"] + "x")[0] == 401  # a refusal is logged too
        service.cli("keys", "revoke", new["id"])
        assert service.call("GET", "/v1/purposes", key=new["key"])[0] == 401
        logged = service.log_tail(all_of_it=True)
    secret = new["key"].split("_", 2)[2]
    assert logged and secret not in logged and new["key"] not in logged
