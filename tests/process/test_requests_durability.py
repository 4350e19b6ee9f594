"""Requests acknowledged before a kill -9 are there after the restart, with their history and audit entries."""

from __future__ import annotations

import threading

import asyncpg
import pytest

from tests.process.service import Service

pytestmark = pytest.mark.process


def submitter(svc: Service, key: str, acked: list[str], stop: threading.Event, tag: str) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        body = {
            "type": "deletion" if n % 2 else "access",
            "subject": {"identifiers": [{"type": "email", "value": f"{tag}-{n}@example.com"}]},
            "region": "DE",
            "channel": "web",
        }
        try:
            status, answer = svc.call("POST", "/v1/requests", body, key=key, timeout=10)
        except OSError:
            continue  # the service died mid-call: nothing was acknowledged
        if status == 201:
            acked.append(answer["id"])


async def test_requests_acknowledged_before_kill9_survive_restart(service, db_url):
    key = service.key("requests:manage")
    acked: list[str] = []
    service.kill9_under_load(lambda stop, tag: submitter(service, key, acked, stop, tag), threads=3, rounds=2)
    assert len(acked) >= 20, "the submitters should have been acknowledged before the kill"
    conn = await asyncpg.connect(db_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM requests WHERE request_id = ANY($1::uuid[])", acked
        )
        history = await conn.fetchval(
            "SELECT count(*) FROM request_history WHERE request_id = ANY($1::uuid[])", acked
        )
        audited = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'request.received' AND payload->>'request_id' = ANY($1)",
            acked,
        )
    finally:
        await conn.close()
    assert stored == history == audited == len(acked)
