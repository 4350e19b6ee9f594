"""Nothing acknowledged is lost: every record answered 201 is there after kill -9 and a restart."""

from __future__ import annotations

import threading

import asyncpg
import pytest

from tests.consents.helpers import batch, record
from tests.process.service import Service

pytestmark = pytest.mark.process


def writer(svc: Service, key: str, acked: list[str], stop: threading.Event, tag: str) -> None:
    n = 0
    while not stop.is_set():
        records = [record(f"{tag}-{n}-{i}@example.com", purpose="analytics") for i in range(50)]
        n += 1
        try:
            status, body = svc.call("POST", "/v1/consents", batch(*records), key=key, timeout=10)
        except OSError:
            continue  # the service died mid-call: nothing was acknowledged
        if status == 201:
            acked.extend(r["id"] for r in body["records"])


async def test_records_acknowledged_before_kill9_survive_restart(service, db_url):
    key = service.key("consents:write")
    acked: list[str] = []
    service.kill9_under_load(lambda stop, tag: writer(service, key, acked, stop, tag), threads=4)
    assert len(acked) >= 200, "the writers should have been acknowledged before the kill"
    conn = await asyncpg.connect(db_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM consent_records WHERE record_id = ANY($1::uuid[])", acked
        )
        states = await conn.fetchval(
            "SELECT count(*) FROM consent_state WHERE record_id = ANY($1::uuid[])", acked
        )
    finally:
        await conn.close()
    assert stored == len(acked)
    assert states == len(acked)  # each record was the first for its own subject
