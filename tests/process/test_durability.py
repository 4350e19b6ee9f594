"""Nothing acknowledged is lost: every record answered 201 is there after kill -9 and a restart."""

from __future__ import annotations

import asyncpg
import pytest

from tests.process.load import write_records

pytestmark = pytest.mark.process


async def test_records_acknowledged_before_kill9_survive_restart(service, db_url):
    key = service.key("consents:write")
    acked: list[str] = []
    service.kill9_under_load(lambda stop, tag: write_records(service, key, acked, stop, tag), threads=4)
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
