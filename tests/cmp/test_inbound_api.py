"""A CMP pushing consent through signed inbound webhooks: registered, verified, deduplicated, audited."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.cmp.helpers import (
    GPP,
    TCF,
    didomi_event,
    gpp_event,
    post,
    records_event,
    signed,
    statuses_of,
    tcf_event,
)
from tests.consents.helpers import record


async def test_a_signed_message_stores_its_records_and_is_audited(client, cmp, admin, conn):
    response = await post(client, "web-cmp", cmp, records_event(record(purpose="analytics", region="FR")))
    assert response.status_code == 202, response.text
    (receipt,) = response.json()["records"]
    history = (await client.get(f"/v1/subjects/{receipt['subject_id']}/consents", headers=admin)).json()
    assert [r["id"] for r in history["records"]] == [receipt["id"]]
    actions = {
        r["action"]: r["actor"]
        for r in await conn.fetch("SELECT action, actor FROM audit_log WHERE actor LIKE 'source:%'")
    }
    assert actions == {"consent.recorded": "source:web-cmp", "webhook.received": "source:web-cmp"}


async def test_a_retried_message_is_answered_again_and_stored_once(client, cmp, conn):
    body = records_event(record(email="r@example.com"))
    first = await post(client, "web-cmp", cmp, body, msg_id="msg_retry")
    again = await post(client, "web-cmp", cmp, body, msg_id="msg_retry")
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json() and again.headers.get("idempotent-replayed") == "true"
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 1
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'webhook.received'") == 1
    other_body = await post(
        client, "web-cmp", cmp, records_event(record(email="s@example.com")), msg_id="msg_retry"
    )
    assert other_body.status_code == 422
    assert other_body.json()["title"] == "webhook-id reused", other_body.text
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 1


@pytest.mark.parametrize(
    "tamper",
    ["forged", "stale", "future", "missing", "unknown_source", "impossible_source", "no_v1"],
)
async def test_a_message_that_is_not_signed_right_is_401_and_stores_nothing(client, cmp, conn, tamper):
    body = records_event(record())
    payload, headers = signed(
        cmp,
        body,
        at=time.time() - 600 if tamper == "stale" else time.time() + 600 if tamper == "future" else None,
    )
    source = "web-cmp"
    if tamper == "forged":
        payload = payload.replace(b"granted", b"denied")
    elif tamper == "missing":
        del headers["webhook-signature"]
    elif tamper == "unknown_source":
        source = "nobody"
    elif tamper == "impossible_source":  # no source can be named so (a NUL; PostgreSQL's text refuses it)
        source = "web%00cmp"
    elif tamper == "no_v1":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v2,")
    response = await client.post(f"/v1/inbound/{source}", content=payload, headers=headers)
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    # A CMP's integrator is told what is wrong: the signature, not an API key this route never asks for.
    assert response.json()["title"] == "Webhook signature refused"
    assert "API key" not in response.text
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 0
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'webhook.received'") == 0


async def test_a_message_for_an_unknown_source_leaves_no_caller_chosen_text_in_the_log(client, caplog):
    # The path's name is anyone's to choose: logged as sent, it would forge lines or flood the log.
    forged_line = "x%0ACRITICAL%20audit%20chain%20broken%20" + "y" * 5000  # %0A: a newline
    payload, headers = signed("whsec_" + "A" * 32, records_event(record()))
    with caplog.at_level("WARNING", logger="consent_svc.cmp"):
        response = await client.post(f"/v1/inbound/{forged_line}", content=payload, headers=headers)
    assert response.status_code == 401, response.text
    assert "inbound message for an unknown source refused" in caplog.text
    assert "audit chain broken" not in caplog.text
    assert "yyyy" not in caplog.text


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"{not json", 400, None),
        ({"type": "consent.records"}, 422, "data"),
        ({"type": "nope", "data": {}}, 422, "type"),
        (records_event(record(purpose="unknown")), 422, "records[0].purpose"),
        ({"type": "consent.records", "data": {"records": []}}, 422, "data.records"),
    ],
)
async def test_a_signed_but_malformed_message_is_a_clear_problem(client, cmp, conn, body, status, field):
    response = await post(client, "web-cmp", cmp, body)
    assert response.status_code == status, response.text
    if field:
        assert field in response.text
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 0


async def test_an_oversized_message_is_413(client, cmp):
    big = records_event(*[record(email=f"b{i}@example.com") for i in range(1)])
    big["padding"] = "x" * (9 * 1024 * 1024)
    response = await post(client, "web-cmp", cmp, big)
    assert response.status_code == 413


async def test_out_of_order_messages_leave_the_latest_collected_in_force(client, cmp, admin):
    later = record(email="o@example.com", purpose="analytics", status="withdrawn", at="2026-11-20T12:00:00Z")
    earlier = record(email="o@example.com", purpose="analytics", status="granted", at="2026-11-20T11:00:00Z")
    first = await post(client, "web-cmp", cmp, records_event(later))
    await post(client, "web-cmp", cmp, records_event(earlier))
    subject = first.json()["records"][0]["subject_id"]
    view = (await client.get(f"/v1/subjects/{subject}", headers=admin)).json()
    assert [(c["purpose"], c["status"]) for c in view["consents"]] == [("analytics", "withdrawn")]


async def test_rotation_keeps_the_old_secret_for_the_grace_period(client, cmp, manager):
    rotated = await client.post("/v1/sources/web-cmp/rotate", headers=manager)
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()
    assert new["secret"] != cmp and new["previous_secret_retires_at"]
    assert (
        await post(client, "web-cmp", cmp, records_event(record(email="a@example.com")))
    ).status_code == 202
    assert (
        await post(client, "web-cmp", new["secret"], records_event(record(email="b@example.com")))
    ).status_code == 202
    listed = (await client.get("/v1/sources", headers=manager)).json()
    assert listed == [
        {
            **listed[0],
            "name": "web-cmp",
            "kind": "generic",
            "default_region": "FR",
            "secrets": 2,
            "disabled_at": None,
        }
    ]
    assert "secret" not in json.dumps(listed).replace('"secrets"', "")


async def test_after_the_grace_period_the_old_secret_is_refused(client, cmp, manager, conn):
    rotated = (await client.post("/v1/sources/web-cmp/rotate", headers=manager)).json()
    await conn.execute(
        "UPDATE source_secrets SET retires_at = now() - interval '1 second' WHERE retires_at IS NOT NULL"
    )
    assert (await post(client, "web-cmp", cmp, records_event(record()))).status_code == 401
    assert (await post(client, "web-cmp", rotated["secret"], records_event(record()))).status_code == 202


async def test_a_disabled_source_is_refused(client, cmp, manager, conn):
    disabled = await client.post("/v1/sources/web-cmp/disable", headers=manager)
    assert disabled.status_code == 200 and disabled.json()["disabled_at"]
    response = await post(client, "web-cmp", cmp, records_event(record()))
    assert response.status_code == 403
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"name": "web-cmp"}, 409),
        ({"name": "Bad Name"}, 422),
        ({"name": "x", "kind": "unknown-cmp"}, 422),
        ({"name": "x", "default_region": "France"}, 422),
        ({}, 422),
    ],
)
async def test_bad_source_registrations(client, cmp, manager, body, status):
    response = await client.post("/v1/sources", json=body, headers=manager)
    assert response.status_code == status, response.text


async def test_unknown_source_management_is_404(client, manager):
    for name in ("nobody", "no%00body", "NoBody"):
        for action in ("rotate", "disable"):
            response = await client.post(f"/v1/sources/{name}/{action}", headers=manager)
            assert response.status_code == 404, (name, action, response.text)


async def test_secrets_are_stored_wrapped_never_in_clear(client, cmp, conn):
    from consent_svc.signing import secret_key

    rows = await conn.fetch("SELECT * FROM source_secrets")
    assert len(rows) == 1 and secret_key(cmp) not in rows[0]["wrapped"]


@pytest.mark.parametrize(
    ("vector", "granted"),
    [
        ("tcf-005", {"targeted_advertising", "personalization", "profiling", "analytics"}),  # every purpose
        ("tcf-007", set()),  # purposes 1, 2, 7, 10: no mapped purpose complete
        ("tcf-011", {"targeted_advertising"}),  # 3 and 4, purpose 1 not required (PurposeOneTreatment)
        ("tcf-023", set()),  # 1 and 3 only
    ],
)
async def test_a_tc_string_becomes_records_by_the_policy_mapping(client, cmp, admin, vector, granted):
    response = await post(client, "web-cmp", cmp, tcf_event(TCF[vector]["tc_string"]))
    assert response.status_code == 202, response.text
    receipts = response.json()["records"]
    assert len(receipts) == 4
    history = (await client.get(f"/v1/subjects/{receipts[0]['subject_id']}/consents", headers=admin)).json()
    statuses = {r["purpose"]: r["status"] for r in history["records"]}
    assert statuses == {p: "granted" if p in granted else "denied" for p in statuses}
    record_ = history["records"][0]
    assert record_["source"]["method"] == "tcf_v2" and record_["source"]["cmp"] == "iab-cmp-300"
    assert record_["proof"]["tc_string"] == TCF[vector]["tc_string"]  # kept (encrypted) as proof
    assert record_["collected_at"].startswith(TCF[vector]["decoded"]["LastUpdatedUtc"][:10])


async def test_a_tc_string_with_its_own_collection_time(client, cmp, admin):
    response = await post(
        client, "web-cmp", cmp, tcf_event(TCF["tcf-005"]["tc_string"], collected_at="2026-11-01T09:30:00Z")
    )
    subject = response.json()["records"][0]["subject_id"]
    history = (await client.get(f"/v1/subjects/{subject}/consents", headers=admin)).json()
    assert {r["collected_at"] for r in history["records"]} == {"2026-11-01T09:30:00Z"}


@pytest.mark.parametrize("vector", [v["id"] for v in TCF.values() if not v["valid"] and v["tc_string"]])
async def test_a_malformed_tc_string_is_a_422_naming_what_is_wrong(client, cmp, conn, vector):
    response = await post(client, "web-cmp", cmp, tcf_event(TCF[vector]["tc_string"]))
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["errors"][0]["field"] == "data.tc_string" and TCF[vector]["error"] in problem["detail"]
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 0


async def test_a_california_gpp_string_with_gpc_opts_out(client, cmp, admin):
    # usca: sale and sharing opted out, some sensitive categories limited, GPC set
    response = await post(client, "web-cmp", cmp, gpp_event(GPP["gpp-013"]["gpp_string"], region="US-CA"))
    assert await statuses_of(client, admin, response) == {
        "sale": "denied",
        "share": "denied",
        "sensitive_data": "denied",
    }


async def test_a_national_gpp_string_that_did_not_opt_out_lifts_earlier_opt_outs(client, cmp, admin):
    # usnat v1: sale, sharing and targeted advertising "did not opt out", sensitive data consented
    body = gpp_event(GPP["gpp-005"]["gpp_string"], region="US-VA")
    assert await statuses_of(client, admin, await post(client, "web-cmp", cmp, body)) == {
        "sale": "granted",
        "share": "granted",
        "targeted_advertising": "granted",
        "sensitive_data": "granted",
    }


async def test_a_gpp_string_takes_the_sources_default_region(client, manager, admin):
    made = (
        await client.post("/v1/sources", json={"name": "us-cmp", "default_region": "US-CA"}, headers=manager)
    ).json()
    response = await post(client, "us-cmp", made["secret"], gpp_event(GPP["gpp-013"]["gpp_string"]))
    subject = response.json()["records"][0]["subject_id"]
    history = (await client.get(f"/v1/subjects/{subject}/consents", headers=admin)).json()["records"]
    assert {r["region"] for r in history} == {"US-CA"}


@pytest.mark.parametrize(
    ("gpp_string", "field"),
    [(v["gpp_string"], "data.gpp_string") for v in GPP.values() if not v["valid"]],
)
async def test_a_malformed_gpp_string_is_a_422(client, cmp, conn, gpp_string, field):
    response = await post(client, "web-cmp", cmp, gpp_event(gpp_string, region="US-CA"))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 0


async def test_a_valid_gpp_string_that_states_nothing_applicable_is_taken_and_stores_nothing(
    client, cmp, conn
):
    # gpp-001: usnat with every field 0 ("not applicable")
    response = await post(client, "web-cmp", cmp, gpp_event(GPP["gpp-001"]["gpp_string"], region="US-CA"))
    assert response.status_code == 202 and response.json() == {"records": []}
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 0
    logged = await conn.fetchval("SELECT payload::text FROM audit_log WHERE action = 'webhook.received'")
    assert json.loads(logged)["records"] == 0


async def test_a_gpp_string_without_any_region_is_a_422(client, manager):
    made = (await client.post("/v1/sources", json={"name": "nowhere"}, headers=manager)).json()
    response = await post(client, "nowhere", made["secret"], gpp_event(GPP["gpp-013"]["gpp_string"]))
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "data.region"


@pytest.fixture
async def didomi(client, manager):
    made = await client.post(
        "/v1/sources", json={"name": "didomi", "kind": "didomi", "default_region": "FR"}, headers=manager
    )
    assert made.status_code == 201, made.text
    return made.json()["secret"]


@pytest.mark.parametrize("kind", ["event.created", "event.updated"])
async def test_a_didomi_event_becomes_records_of_the_mapped_purposes(client, didomi, admin, kind):
    purposes = [
        {"id": "cookies", "enabled": True},
        {"id": "select_personalized_ads", "enabled": False},
        {"id": "email_newsletter", "enabled": None},  # no choice for the purpose itself: nothing recorded
        {"id": "not_mapped", "enabled": True},  # not in policies/didomi.toml: ignored
    ]
    response = await post(client, "didomi", didomi, didomi_event(purposes, kind))
    assert response.status_code == 202, response.text
    subject = response.json()["records"][0]["subject_id"]
    history = (await client.get(f"/v1/subjects/{subject}/consents", headers=admin)).json()["records"]
    assert {r["purpose"]: r["status"] for r in history} == {
        "analytics": "granted",
        "targeted_advertising": "denied",
    }
    assert {r["region"] for r in history} == {"FR"} and {r["source"]["cmp"] for r in history} == {"didomi"}
    assert {r["collected_at"] for r in history} == {"2026-11-20T10:00:00Z"}
    # the same person found again by the organization's own id
    lookup = await client.post(
        "/v1/subjects/lookup",
        json={"identifiers": [{"type": "customer_id", "value": "cust-42"}]},
        headers=admin,
    )
    assert lookup.json()["subject_id"] == subject


@pytest.mark.parametrize(
    ("user", "region"),
    [
        ({"country": "US", "region": "CA"}, "US-CA"),  # California, not Canada
        ({"country": "us", "region": "US-VA"}, "US-VA"),
        ({"country": "FR", "region": "ZZZ"}, "FR"),  # no such subdivision: the country
        ({"country": "CA", "region": "US-CA"}, "CA"),  # not a subdivision of that country
        ({"region": "CA"}, "FR"),  # a region alone names no country: the source's default
        ({"country": "DE"}, "DE"),
    ],
)
async def test_a_didomi_users_region_is_read_as_a_subdivision_of_its_country(
    client, didomi, admin, user, region
):
    response = await post(
        client, "didomi", didomi, didomi_event([{"id": "cookies", "enabled": True}], **user)
    )
    assert response.status_code == 202, response.text
    subject = response.json()["records"][0]["subject_id"]
    history = (await client.get(f"/v1/subjects/{subject}/consents", headers=admin)).json()["records"]
    assert {r["region"] for r in history} == {region}


@pytest.mark.parametrize("kind", ["event.deleted", "user.created", "user.updated", "user.deleted"])
async def test_didomis_events_without_a_consent_choice_are_taken_and_store_nothing(
    client, didomi, conn, kind
):
    # Didomi posts every event of the organisation to its webhook: a 4xx would only make it retry.
    body = {
        "type": kind,
        "parameters": {"entity": {"id": "didomi-user-1", "organization_user_id": "cust-42"}},
    }
    response = await post(client, "didomi", didomi, body)
    assert response.status_code == 202 and response.json() == {"records": []}
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 0
    logged = await conn.fetchval("SELECT payload::text FROM audit_log WHERE action = 'webhook.received'")
    assert json.loads(logged) | {"webhook_id": None} == {
        "records": 0,
        "source": "didomi",
        "type": kind,
        "webhook_id": None,
    }


@pytest.mark.parametrize(
    "event", [didomi_event([{"id": "cookies", "enabled": True}]), {"type": "user.updated", "parameters": {}}]
)
async def test_didomis_format_from_a_generic_source_is_refused(client, cmp, conn, event):
    response = await post(client, "web-cmp", cmp, event)
    assert response.status_code == 422 and response.json()["errors"][0]["field"] == "type"
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 0


@pytest.mark.parametrize(
    ("event", "field"),
    [
        (didomi_event([{"id": "not_mapped", "enabled": True}]), "parameters.entity.consents.purposes"),
        ({"type": "event.created", "parameters": {}}, "parameters.entity"),
        ({"type": "event.updated", "parameters": {"entity": {"user": {"id": "x"}}}}, "parameters.new_entity"),
    ],
)
async def test_a_didomi_event_that_decides_nothing_is_a_422(client, didomi, event, field):
    response = await post(client, "didomi", didomi, event)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field


async def post_at_once(client, secret: str, messages: list[tuple[dict, str]]):
    """Messages sent concurrently, as a busy CMP does: each gets its own answer."""
    signed_messages = [signed(secret, body, msg_id=msg_id) for body, msg_id in messages]
    return await asyncio.gather(
        *(client.post("/v1/inbound/web-cmp", content=p, headers=h) for p, h in signed_messages)
    )


async def test_messages_sent_at_once_each_get_their_own_receipts_and_a_repeat_is_stored_once(
    client, cmp, conn
):
    messages = [(records_event(record(email=f"c{i}@example.com")), f"msg_c{i}") for i in range(24)]
    messages.append(messages[5])  # a CMP's retry, arriving before the first try was answered
    answers = await post_at_once(client, cmp, messages)
    assert [a.status_code for a in answers] == [202] * 25, [a.text for a in answers]
    receipts = [a.json()["records"] for a in answers]
    assert all(len(r) == 1 for r in receipts)
    assert len({r[0]["subject_id"] for r in receipts[:24]}) == 24
    assert receipts[24] == receipts[5]
    assert [a.headers.get("idempotent-replayed") for a in (answers[5], answers[24])].count("true") == 1
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 24
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'webhook.received'") == 24
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE type = 'consent.changed'") == 24
    # Each receipt names the subject of its own message: a later message for the same person finds it.
    for i in (0, 5, 23):
        later = await post(
            client, "web-cmp", cmp, records_event(record(email=f"c{i}@example.com", purpose="analytics"))
        )
        assert later.json()["records"][0]["subject_id"] == receipts[i][0]["subject_id"]


async def test_a_bad_message_among_messages_sent_at_once_fails_alone(client, cmp, conn):
    first = await post(client, "web-cmp", cmp, records_event(record(email="a@example.com")))
    second = await post(client, "web-cmp", cmp, records_event(record(email="b@example.com")))
    assert first.status_code == second.status_code == 202
    both = record(
        identifiers=[{"type": "email", "value": "a@example.com"}, {"type": "email", "value": "b@example.com"}]
    )
    messages = [(records_event(record(email=f"d{i}@example.com")), f"msg_d{i}") for i in range(12)]
    messages.insert(3, (records_event(both), "msg_two_subjects"))
    messages.insert(
        7, (records_event(record(email="other@example.com")), "msg_d0")
    )  # msg_d0's id, another body
    answers = await post_at_once(client, cmp, messages)
    statuses = [a.status_code for a in answers]
    assert statuses[3] == 409 and "different subjects" in answers[3].text
    # Two messages with one webhook-id and different bodies: whichever came second is refused.
    assert sorted([statuses[0], statuses[7]]) == [202, 422]
    assert "webhook-id was used with a different body" in answers[0 if statuses[0] == 422 else 7].text
    assert statuses.count(202) == 12, [a.text for a in answers]
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 2 + 12
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'webhook.received'") == 2 + 12
