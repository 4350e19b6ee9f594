"""Data-subject requests end to end through the API: intake and legal due dates, the lifecycle, exports,
deletion with crypto-shredding and downstream systems, and the signed receipt."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from standardwebhooks.webhooks import Webhook

from consent_svc import crypto
from consent_svc.consents.ledger import RecordRules
from consent_svc.policies.load import load_policies
from consent_svc.requests.desk import Desk
from tests.consents.helpers import batch, record
from tests.receiver import Receiver
from tests.requests.helpers import EMAIL, SUBJECT, act, seed_consents, submit


@pytest.fixture
def settings(settings):
    # Downstream systems listen on 127.0.0.1 here.
    return msgspec.structs.replace(
        settings, webhook_allow_private_networks=True, webhook_retry_base_seconds=0.05, mode="local"
    )


@pytest.fixture
async def staff(keys):
    return await keys.of("requests:manage")


def signature_verifies(signed: dict) -> bool:
    canonical = json.dumps(
        signed["receipt"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()
    public = Ed25519PublicKey.from_public_bytes(crypto_b64(signed["public_key"]))
    try:
        public.verify(crypto_b64(signed["signature"]), canonical)
    except Exception:
        return False
    return True


def crypto_b64(text: str) -> bytes:
    import base64

    return base64.b64decode(text)


@pytest.mark.parametrize(
    ("region", "received_at", "due_at"),
    [
        ("DE", "2024-01-31T10:00:00Z", "2024-02-29"),  # GDPR month, leap year
        ("FR", "2026-03-31T10:00:00Z", "2026-04-30"),  # month end
        ("US-CA", "2026-01-10T10:00:00Z", "2026-02-24"),  # 45 calendar days
        ("ZZ", "2026-01-10T10:00:00Z", "2026-01-25"),  # unknown region: the strictest default
    ],
)
async def test_a_backdated_request_gets_the_due_date_of_its_law(client, staff, region, received_at, due_at):
    made = await submit(client, staff, region=region, received_at=received_at, channel="mail")
    assert (made["status"], made["due_at"], made["received_at"][:10]) == (
        "received",
        due_at,
        received_at[:10],
    )
    assert [h["action"] for h in made["history"]] == ["received"]


async def test_ccpa_sets_an_acknowledgement_deadline(client, staff):
    made = await submit(client, staff, region="US-CA", received_at="2026-03-20T10:00:00Z")
    assert made["acknowledge_by"] == "2026-04-06"  # 10 business days, Cesar Chavez Day skipped


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"type": "forget_me"}, "type"),
        ({"region": "XX-99"}, "region"),
        ({"received_at": "2099-01-01T00:00:00Z"}, "received_at"),
        (
            {"subject": {"identifiers": [{"type": "email", "value": "not-an-address"}]}},
            "subject.identifiers[0].value",
        ),
        ({"type": "appeal"}, "appeals"),
        ({"appeals": "0190f5a4-6a2b-7c3d-8e4f-5a6b7c8d9e0f"}, "type"),
    ],
)
async def test_bad_intake_is_refused_and_names_the_field(client, staff, change, field):
    body = {"type": "access", "subject": SUBJECT, "region": "DE", "channel": "web", **change}
    response = await client.post("/v1/requests", json=body, headers=staff)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["field"] for e in problem.get("errors", [])] or field in problem["detail"]
    listed = await client.get("/v1/requests", headers=staff)
    assert listed.json()["requests"] == []  # nothing stored


async def test_a_resubmission_answers_the_open_request(client, staff):
    first = await submit(client, staff)
    again = await submit(client, staff, expect=200)
    assert again["id"] == first["id"]
    other = await submit(client, staff, type="deletion")
    assert other["id"] != first["id"]


async def test_illegal_transitions_are_409_and_a_refusal_needs_a_reason(client, staff):
    made = await submit(client, staff)
    await act(client, staff, made["id"], "complete", expect=409)  # not verified
    await act(client, staff, made["id"], "reject", expect=422)  # no reason
    rejected = await act(client, staff, made["id"], "reject", reason="could not verify identity")
    assert rejected["status"] == "rejected" and rejected["closed_at"]
    late = await act(client, staff, made["id"], "verify", expect=409, reason="late")
    assert (late["title"], late["detail"]) == (
        "Illegal transition",
        "`verify` does not apply to a request that is `rejected`: only to one that is `received` or `verifying`.",
    )
    await act(client, staff, made["id"], "extend", expect=409, reason="too late")
    missing = await client.post(
        "/v1/requests/0190f5a4-6a2b-7c3d-8e4f-5a6b7c8d9e0f/verify", json={"reason": "x"}, headers=staff
    )
    assert missing.status_code == 404


async def test_an_extension_moves_the_due_date_once_where_the_law_allows(client, staff):
    today = datetime.now(UTC).date()
    made = await submit(client, staff, region="US-CA")
    assert made["due_at"] == str(today + timedelta(days=45))
    extended = await act(client, staff, made["id"], "extend", reason="complex request")
    assert extended["extended"] and extended["due_at"] == str(today + timedelta(days=90))
    assert extended["history"][-1]["reason"] == "complex request"
    await act(client, staff, made["id"], "extend", expect=409, reason="again")
    brazil = await submit(client, staff, region="BR", type="deletion")
    await act(client, staff, brazil["id"], "extend", expect=409, reason="LGPD has none")


async def test_uk_identity_information_starts_the_clock(client, staff):
    made = await submit(client, staff, region="GB", received_at="2026-03-02T09:00:00Z")
    assert made["due_at"] == "2026-04-02"
    verified = await act(
        client,
        staff,
        made["id"],
        "verify",
        reason="passport copy received",
        verified_at="2026-03-10T12:00:00Z",
    )
    assert (verified["status"], verified["due_at"]) == ("verified", "2026-04-10")
    await act(client, staff, made["id"], "verify", expect=409, reason="twice")


async def test_an_overdue_request_is_listed_and_announced_once(client, staff, settings, conn):
    late = await submit(client, staff, region="US-CA", received_at="2026-01-02T10:00:00Z")
    await submit(client, staff, region="US-CA", type="deletion")
    overdue = (await client.get("/v1/requests?overdue=true", headers=staff)).json()["requests"]
    assert [r["id"] for r in overdue] == [late["id"]] and overdue[0]["overdue"]
    everything = (await client.get("/v1/requests", headers=staff)).json()["requests"]
    assert everything[0]["id"] == late["id"]  # earliest due first
    policies = load_policies(settings.policies_dir)
    keys = crypto.load_keys(settings)
    desk = Desk(policies, RecordRules.of(policies, keys, settings), keys, settings)
    async with conn.transaction():
        assert await desk.announce_deadlines(conn, datetime.now(UTC)) == 1
    async with conn.transaction():
        assert await desk.announce_deadlines(conn, datetime.now(UTC)) == 0
    sent = await conn.fetch(
        "SELECT type, data FROM outbox WHERE type LIKE 'request.%due%' OR type = 'request.overdue'"
    )
    assert [(r["type"], json.loads(r["data"])["request_id"]) for r in sent] == [
        ("request.overdue", late["id"])
    ]


async def test_an_access_export_holds_everything_about_the_subject_and_the_receipt_verifies(
    client, staff, admin
):
    await seed_consents(client, admin)
    made = await submit(client, staff)
    blocked = await client.get(f"/v1/requests/{made['id']}/export", headers=staff)
    assert blocked.status_code == 409  # not verified yet
    await act(client, staff, made["id"], "verify", reason="checked id document")
    response = await client.get(f"/v1/requests/{made['id']}/export", headers=staff)
    assert response.status_code == 200, response.text
    export = response.json()
    [subject] = export["subjects"]
    assert {"type": "email", "value": EMAIL} in subject["identifiers"]
    assert {r["purpose"] for r in subject["consent_history"]} == {"analytics", "personalization"}
    assert all(r["source"]["system"] == "shop-web" for r in subject["consent_history"])
    assert [(d["purpose"], d["outcome"]) for d in subject["decisions"]] == [("analytics", "allowed")]
    assert [r["id"] for r in export["requests"]] == [made["id"]]
    done = await act(client, staff, made["id"], "complete", reason="export sent")
    assert done["status"] == "completed"
    signed = (await client.get(f"/v1/requests/{made['id']}/receipt", headers=staff)).json()
    assert signature_verifies(signed)
    assert [h["action"] for h in signed["receipt"]["history"]] == ["received", "verify", "complete"]
    assert EMAIL not in json.dumps(signed)
    signed["receipt"]["status"] = "rejected"
    assert not signature_verifies(signed)  # a changed receipt no longer verifies


async def test_an_opt_out_takes_effect_at_once_without_verification(client, staff, admin):
    made = await submit(client, staff, type="opt_out_of_sale", region="US-CA")
    assert made["status"] == "completed"
    check = {"subject": SUBJECT, "purpose": "sale", "region": "US-CA"}
    decision = (await client.post("/v1/decisions", json=check, headers=admin)).json()
    assert decision["allowed"] is False


async def test_a_deletion_with_two_systems_one_late_erases_and_completes_on_the_last_confirmation(
    client, staff, admin, keys
):
    await seed_consents(client, admin)
    earlier = await submit(client, staff)
    await act(client, staff, earlier["id"], "verify", reason="checked")
    billing, crm = Receiver(), Receiver()
    try:
        made_systems = []
        for name, receiver in (("billing", billing), ("crm", crm)):
            response = await client.post(
                "/v1/systems",
                json={"name": name, "url": receiver.url, "request_types": ["deletion"]},
                headers=staff,
            )
            assert response.status_code == 201, response.text
            made_systems.append(response.json())
        deletion = await submit(
            client, staff, type="deletion", received_at="2026-01-02T10:00:00Z", region="US-CA"
        )
        verified = await act(client, staff, deletion["id"], "verify", reason="checked")
        assert verified["status"] == "in_progress"
        assert {s["name"] for s in verified["systems"]} == {"billing", "crm"}

        # Each system receives the identifiers it must act on, signed with its own secret.
        for system, receiver in zip(made_systems, (billing, crm), strict=True):
            [event] = await receiver.wait_for(1)
            headers, body = receiver.received[0]
            assert Webhook(system["secret"]).verify(body, headers) == event
            assert event["type"] == "request.deletion_requested"
            assert event["data"]["identifiers"] == [{"type": "email", "value": EMAIL}]

        # In this service, at once: lookup 404, the earlier access export gone, an import refused.
        assert (await client.post("/v1/subjects/lookup", json=SUBJECT, headers=admin)).status_code == 404
        assert (await client.get(f"/v1/requests/{earlier['id']}/export", headers=staff)).status_code == 410
        again = await client.post(
            "/v1/consents", json=batch(record(EMAIL, "sale", "granted", region="US-CA")), headers=admin
        )
        assert again.status_code == 409, again.text

        # billing confirms; crm is late, and the request is overdue until it answers.
        billing_key = {"Authorization": f"Bearer {made_systems[0]['key']}"}
        crm_key = {"Authorization": f"Bearer {made_systems[1]['key']}"}
        wrong = await client.post(
            f"/v1/requests/{deletion['id']}/systems/{made_systems[1]['id']}/confirm", headers=billing_key
        )
        assert wrong.status_code == 403
        staff_try = await client.post(
            f"/v1/requests/{deletion['id']}/systems/{made_systems[0]['id']}/confirm", headers=staff
        )
        assert staff_try.status_code == 403
        half = await client.post(
            f"/v1/requests/{deletion['id']}/systems/{made_systems[0]['id']}/confirm", headers=billing_key
        )
        assert half.status_code == 200 and half.json()["status"] == "in_progress"
        overdue = (await client.get("/v1/requests?overdue=true", headers=staff)).json()["requests"]
        assert [r["id"] for r in overdue] == [deletion["id"]]
        assert (await client.get(f"/v1/requests/{deletion['id']}/receipt", headers=staff)).status_code == 409
        done = await client.post(
            f"/v1/requests/{deletion['id']}/systems/{made_systems[1]['id']}/confirm", headers=crm_key
        )
        assert done.json()["status"] == "completed"

        signed = (await client.get(f"/v1/requests/{deletion['id']}/receipt", headers=staff)).json()
        assert signature_verifies(signed)
        confirmed = {s["name"]: s["confirmed_at"] for s in signed["receipt"]["systems"]}
        assert confirmed["billing"] < confirmed["crm"]
        assert signed["receipt"]["erased_subject"] == verified["subject_id"]
        assert EMAIL not in json.dumps(signed)
    finally:
        billing.close()
        crm.close()


async def test_a_deletion_with_no_system_completes_and_the_audit_names_no_identifier(
    client, staff, admin, conn
):
    await seed_consents(client, admin)
    made = await submit(client, staff, type="deletion")
    done = await act(client, staff, made["id"], "verify", reason="checked")
    assert done["status"] == "completed"
    assert [h["action"] for h in done["history"]] == ["received", "verify", "start", "complete"]
    assert (await client.post("/v1/subjects/lookup", json=SUBJECT, headers=admin)).status_code == 404
    assert await conn.fetchval("SELECT count(*) FROM subject_identifiers") == 0
    assert await conn.fetchval("SELECT count(*) FROM subjects WHERE wrapped_key IS NOT NULL") == 0
    payloads = await conn.fetch("SELECT payload::text AS p FROM audit_log")
    assert not any(EMAIL in row["p"] for row in payloads)
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'subject.erased'") == 1
