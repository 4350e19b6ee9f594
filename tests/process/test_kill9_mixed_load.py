"""kill -9 under a mixed load, several times: consent writes, consent checks and signed inbound CMP events at
once, with a subscriber. After the restarts, everything answered 2xx is there (records, decisions, their audit
entries, their outbox events), the audit chain verifies, and every acknowledged change is delivered."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request

import asyncpg
import pytest

from tests.cmp.helpers import signed
from tests.consents.helpers import batch, record
from tests.process.service import Service
from tests.receiver import Receiver

pytestmark = pytest.mark.process


def post_signed(svc: Service, source: str, secret: str, event: dict) -> tuple[int, dict]:
    body, headers = signed(secret, event)
    request = urllib.request.Request(
        f"http://127.0.0.1:{svc.port}/v1/inbound/{source}", data=body, headers=headers, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


async def test_everything_acknowledged_under_mixed_load_survives_repeated_kill9(local_service, db_url):
    svc = local_service
    receiver = Receiver()
    try:
        manager = svc.key("webhooks:manage")
        status, _ = svc.call(
            "POST",
            "/v1/webhooks/subscriptions",
            {"url": receiver.url, "events": ["consent.changed"]},
            manager,
        )
        assert status == 201
        status, source = svc.call(
            "POST", "/v1/sources", {"name": "site-cmp", "default_region": "FR"}, manager
        )
        assert status == 201
        key = svc.key("consents:write", "decisions:check")
        lock = threading.Lock()
        records: list[str] = []  # acknowledged with 201 (API) or 202 (inbound)
        decisions: list[str] = []  # answered with 200
        refused: list[int] = []  # anything else but a dead connection

        def work(stop: threading.Event, tag: str) -> None:
            n = 0
            while not stop.is_set():
                n += 1
                email = f"{tag}-{n}@example.com"
                try:
                    if n % 4 == 0:
                        event = {"type": "consent.records", "data": batch(record(email, purpose="analytics"))}
                        status, body = post_signed(svc, "site-cmp", source["secret"], event)
                        ok, into = status == 202, records
                    elif n % 4 == 1:
                        status, body = svc.call(
                            "POST", "/v1/consents", batch(record(email, purpose="analytics")), key, 10
                        )
                        ok, into = status == 201, records
                    else:
                        check = {"subject": record(email)["subject"], "purpose": "analytics", "region": "FR"}
                        status, body = svc.call("POST", "/v1/decisions", check, key, 10)
                        ok, into = status == 200, decisions
                except OSError:
                    continue  # the service died mid-call: nothing was acknowledged
                with lock:
                    if ok:
                        into.extend(
                            [r["id"] for r in body["records"]] if into is records else [body["decision_id"]]
                        )
                    else:
                        refused.append(status)

        svc.kill9_under_load(work, threads=4, rounds=3)
        assert len(records) >= 30 and len(decisions) >= 30, (len(records), len(decisions))
        assert set(refused) <= {503}, refused  # a request caught by the restart may be refused, never broken

        conn = await asyncpg.connect(db_url)
        try:
            stored = await conn.fetchval(
                "SELECT count(*) FROM consent_records WHERE record_id = ANY($1::uuid[])", records
            )
            recorded = await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'consent.recorded' AND entry_id = ANY($1::uuid[])",
                records,
            )
            audited = await conn.fetchval(
                "SELECT count(*) FROM audit_log WHERE action = 'decision.made' AND entry_id = ANY($1::uuid[])",
                decisions,
            )
            events = await conn.fetchval(
                """SELECT count(DISTINCT convert_from(data, 'UTF8')::jsonb ->> 'record_id') FROM outbox
                   WHERE type = 'consent.changed' AND NOT sealed
                     AND convert_from(data, 'UTF8')::jsonb ->> 'record_id' = ANY($1::text[])""",
                records,
            )
            deadline = time.monotonic() + 30
            everything = records + decisions
            while await conn.fetchval(
                "SELECT count(*) FROM audit_chain WHERE entry_id = ANY($1::uuid[])", everything
            ) < len(everything):
                assert time.monotonic() < deadline, "acknowledged entries not chained"
                await asyncio.sleep(0.2)
        finally:
            await conn.close()
        assert (stored, recorded, events) == (len(records),) * 3
        assert audited == len(decisions)  # a decision's record is its audit entry
        assert svc.cli("audit", "verify").startswith("ok: ")

        deadline = time.monotonic() + 120
        while True:
            delivered = {e["data"]["record_id"] for e in receiver.events(None)}
            missing = set(records) - delivered
            if not missing or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert not missing, f"{len(missing)} of {len(records)} acknowledged changes never delivered"
    finally:
        receiver.close()
