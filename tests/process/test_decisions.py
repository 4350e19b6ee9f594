"""The consent check as a real service with two workers: withdrawals are seen at once by every worker, and
no decision that was answered is lost to kill -9."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from tests.consents.helpers import batch, record
from tests.process.service import Service

pytestmark = pytest.mark.process


def iso(delta_seconds: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_seconds)).isoformat().replace("+00:00", "Z")


def check(email: str) -> dict:
    return {
        "subject": {"identifiers": [{"type": "email", "value": email}]},
        "purpose": "personalization",
        "region": "DE",
    }


def test_a_withdrawal_is_seen_by_every_check_after_it_on_every_worker(service):
    writer, engine = service.key("consents:write"), service.key("decisions:check")
    for n in range(5):
        email = f"w{n}@example.com"
        status, _ = service.call(
            "POST",
            "/v1/consents",
            batch(record(email, purpose="personalization", region="DE", at=iso(-60))),
            key=writer,
        )
        assert status == 201
        # Warm both workers with allowed answers, so a stale answer would have something to be stale from.
        assert all(
            service.call("POST", "/v1/decisions", check(email), key=engine)[1]["allowed"] for _ in range(10)
        )
        status, _ = service.call(
            "POST",
            "/v1/consents",
            batch(record(email, purpose="personalization", status="withdrawn", region="DE", at=iso(-1))),
            key=writer,
        )
        assert status == 201
        # Each call opens a new connection, so granian spreads them over both workers.
        answers = [service.call("POST", "/v1/decisions", check(email), key=engine)[1] for _ in range(20)]
        assert [a["reason"] for a in answers] == ["consent_withdrawn"] * 20


def checker(svc: Service, key: str, answered: list[str], stop: threading.Event, tag: str) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        try:
            status, body = svc.call(
                "POST", "/v1/decisions", check(f"{tag}-{n}@example.com"), key=key, timeout=10
            )
        except OSError:
            continue  # the service died mid-call: nothing was answered
        if status == 200:
            answered.append(body["decision_id"])


async def test_decisions_answered_before_kill9_are_all_recorded(service, db_url):
    key = service.key("decisions:check")
    answered: list[str] = []
    service.kill9_under_load(lambda stop, tag: checker(service, key, answered, stop, tag), threads=8)
    assert len(answered) >= 100, "checks should have been answered before the kill"
    conn = await asyncpg.connect(db_url)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM audit_log WHERE entry_id = ANY($1::uuid[]) AND action = 'decision.made'",
            answered,
        )
        # ... and every one joins the audit tree after the restarts, which verifies end to end
        deadline = asyncio.get_running_loop().time() + 10
        while await conn.fetchval(
            "SELECT count(*) FROM audit_chain WHERE entry_id = ANY($1::uuid[])", answered
        ) < len(answered):
            assert asyncio.get_running_loop().time() < deadline, "answered decisions not chained"
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
    assert stored == len(answered)
    assert service.cli("audit", "verify").startswith("ok: ")
