"""Each request type end to end, the export's completeness, the audit chain after an erasure, expiry of codes and
links, deadline announcements, and no identifier in telemetry or logs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from consent_svc import crypto
from consent_svc.audit.verify import verify
from consent_svc.consents.ledger import RecordRules
from consent_svc.policies.load import load_policies
from consent_svc.requests.desk import Desk
from tests.conftest import SPANS
from tests.consents.helpers import batch, record
from tests.receiver import Receiver
from tests.requests.helpers import EMAIL, SUBJECT, act, code_for, seed_consents, submit


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(
        settings, webhook_allow_private_networks=True, webhook_retry_base_seconds=0.05, mode="local"
    )


@pytest.fixture
async def staff(keys):
    return await keys.of("requests:manage")


@pytest.mark.parametrize("kind", ["correction", "portability", "access"])
async def test_a_verified_request_is_worked_and_completed(client, staff, admin, kind):
    await seed_consents(client, admin)
    made = await submit(client, staff, type=kind, details={"asked": "fix my surname"})
    verified = await act(client, staff, made["id"], "verify", reason="matched account")
    assert verified["status"] == "verified"
    assert verified["details"] == {"asked": "fix my surname"}
    exported = await client.get(f"/v1/requests/{made['id']}/export", headers=staff)
    assert exported.status_code == (200 if kind != "correction" else 409)
    done = await act(client, staff, made["id"], "complete", reason="done")
    assert done["status"] == "completed"
    assert [h["to_status"] for h in done["history"]] == ["received", "verified", "completed"]


async def test_limit_sensitive_takes_effect_at_once(client, staff, admin):
    made = await submit(client, staff, type="limit_sensitive", region="US-CA")
    assert made["status"] == "completed"
    assert made["due_at"] == made["history"][0]["at"][:10] or made["due_at"] > made["received_at"][:10]
    lookup = (await client.post("/v1/subjects/lookup", json=SUBJECT, headers=admin)).json()
    state = (await client.get(f"/v1/subjects/{lookup['subject_id']}", headers=admin)).json()
    assert [(c["purpose"], c["status"]) for c in state["consents"]] == [("sensitive_data", "denied")]
    assert state["consents"][0]["source"]["touchpoint"] == "privacy_request"


async def test_an_appeal_of_a_refusal_has_the_appeal_deadline_of_its_region(client, staff):
    refused = await submit(client, staff, region="US-VA", type="deletion", received_at="2026-01-02T10:00:00Z")
    early = await submit(client, staff, expect=409, region="US-VA", type="appeal", appeals=refused["id"])
    assert early["title"] == "Conflict"
    await act(client, staff, refused["id"], "reject", reason="could not verify the requester")
    appeal = await submit(
        client,
        staff,
        region="US-VA",
        type="appeal",
        appeals=refused["id"],
        received_at="2026-01-10T10:00:00Z",
    )
    assert (appeal["appeals"], appeal["due_at"]) == (refused["id"], "2026-03-11")  # 60 days (59.1-577(C))
    await act(client, staff, appeal["id"], "extend", expect=409, reason="appeals have no extension")


async def test_the_export_holds_every_record_decision_and_delivery(client, staff, admin, keys):
    receiver = Receiver()
    try:
        manager = await keys.of("webhooks:manage")
        subscription = await client.post(
            "/v1/webhooks/subscriptions",
            json={"url": receiver.url, "events": ["consent.changed"]},
            headers=manager,
        )
        assert subscription.status_code == 201
        written = []
        for n, (purpose, status) in enumerate(
            [("analytics", "granted"), ("analytics", "withdrawn"), ("email_marketing", "granted")]
        ):
            body = batch(
                record(EMAIL, purpose, status, region="DE", at=f"2026-03-0{n + 1}T10:00:00Z", proof={"n": n})
            )
            written.append(
                (await client.post("/v1/consents", json=body, headers=admin)).json()["records"][0]["id"]
            )
        decisions = []
        for purpose in ("analytics", "email_marketing", "sale"):
            check = {"subject": SUBJECT, "purpose": purpose, "region": "DE"}
            decisions.append(
                (await client.post("/v1/decisions", json=check, headers=admin)).json()["decision_id"]
            )
        await receiver.wait_for(3)
        made = await submit(client, staff)
        await act(client, staff, made["id"], "verify", reason="checked")
        export = (await client.get(f"/v1/requests/{made['id']}/export", headers=staff)).json()
    finally:
        receiver.close()
    [subject] = export["subjects"]
    assert sorted(r["id"] for r in subject["consent_history"]) == sorted(written)
    assert sorted(r["proof"]["n"] for r in subject["consent_history"]) == [0, 1, 2]
    assert {c["purpose"]: c["status"] for c in subject["current_consents"]} == {
        "analytics": "withdrawn",
        "email_marketing": "granted",
    }
    assert [d["purpose"] for d in subject["decisions"]] == ["analytics", "email_marketing", "sale"]
    assert all("reason" in d and "policy_version" in d for d in subject["decisions"])
    assert len(subject["deliveries"]) == 3 and all(
        d["recipient"] == "127.0.0.1" for d in subject["deliveries"]
    )
    assert {a["action"] for a in subject["activity"]} >= {"consent.recorded"}
    assert export["identifiers"] == [{"type": "email", "value": EMAIL}]


async def test_the_audit_chain_verifies_after_an_erasure(settings, keys, conn):
    from litestar.testing import AsyncTestClient

    from consent_svc.app import create_app

    admin, staff = await keys.of("admin"), await keys.of("requests:manage")
    async with AsyncTestClient(create_app(settings)) as client:
        await seed_consents(client, admin)
        made = await submit(client, staff, type="deletion")
        assert (await act(client, staff, made["id"], "verify", reason="checked"))["status"] == "completed"
        export = await client.get(f"/v1/requests/{made['id']}/export", headers=staff)
        assert export.status_code == 409  # a deletion has no export; the subject's data is gone anyway
    signer = crypto.load_signing_key(settings)
    report = await verify(conn, {signer.key_id: signer.public_key})
    assert report.ok and report.entries > 5, report.line()
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'subject.erased'") == 1


async def test_expired_codes_and_links_are_refused(client, staff, conn, settings):
    made = (
        await client.post("/public/requests", json={"type": "access", "subject": SUBJECT, "region": "DE"})
    ).json()
    code = await code_for(conn, settings, made["id"])
    await conn.execute("UPDATE request_codes SET expires_at = now() - interval '1 second'")
    expired = await client.post(f"/public/requests/{made['id']}/verify", json={"code": code})
    assert expired.status_code == 410
    await act(client, staff, made["id"], "verify", reason="checked by phone")
    link = (await client.post(f"/v1/requests/{made['id']}/export-link", headers=staff)).json()
    await conn.execute("UPDATE export_links SET expires_at = now() - interval '1 second'")
    assert (await client.get(link["url"])).status_code == 410


async def test_due_soon_is_announced_once_before_the_due_date(client, staff, settings, conn):
    ten_days_ago = (datetime.now(UTC) - timedelta(days=10)).isoformat()
    soon = await submit(client, staff, region="BR", received_at=ten_days_ago)  # 15 days: due in 5
    await submit(client, staff, region="US-CA", type="deletion")  # due in 45 days
    policies = load_policies(settings.policies_dir)
    keys = crypto.load_keys(settings)
    desk = Desk(policies, RecordRules.of(policies, keys, settings), keys, settings)
    for expected in (1, 0):
        async with conn.transaction():
            assert await desk.announce_deadlines(conn, datetime.now(UTC)) == expected
    sent = await conn.fetch("SELECT type, data FROM outbox WHERE type LIKE 'request.due_soon'")
    assert [json.loads(r["data"])["request_id"] for r in sent] == [soon["id"]]


async def test_no_identifier_reaches_telemetry_logs_or_urls(client, staff, admin, caplog, conn, settings):
    SPANS.clear()
    caplog.set_level("DEBUG")
    await seed_consents(client, admin)
    public = (
        await client.post("/public/requests", json={"type": "access", "subject": SUBJECT, "region": "DE"})
    ).json()
    code = await code_for(conn, settings, public["id"])
    await client.post(f"/public/requests/{public['id']}/verify", json={"code": code})
    deletion = await submit(client, staff, type="deletion")
    await act(client, staff, deletion["id"], "verify", reason="checked")
    spans = [json.loads(span.to_json()) for span in SPANS.get_finished_spans()]
    text = (json.dumps(spans) + caplog.text).lower()
    assert "dora" not in text and code not in text
    urls = {
        span["attributes"].get("http.target", "") + span["attributes"].get("url.path", "") for span in spans
    }
    assert not any("example.com" in url for url in urls)
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE position('dora'::bytea in data) > 0") == 0
