"""The consent check through its HTTP API: what a decision engine and a legal team see."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from consent_svc.policies.load import build_policies
from tests.consents.helpers import record
from tests.decisions.helpers import check, decide, gpc_records, iso, write


async def test_unknown_subject_under_gdpr_is_denied_opt_in_required(client, admin):
    answer = await decide(client, admin, check())
    assert answer["allowed"] is False
    assert answer["reason"] == "no_consent_opt_in_required"
    assert answer["policy"]["regime"] == "eu_gdpr"
    assert answer["policy"]["version"]
    assert answer["consent_record_id"] is None
    assert set(answer) == {
        "decision_id",
        "allowed",
        "reason",
        "purpose",
        "region",
        "policy",
        "consent_record_id",
        "evaluated_at",
    }


async def test_grant_allows_and_names_the_record(client, admin):
    (receipt,) = await write(client, admin, record(purpose="personalization", region="DE", at=iso(-60)))
    answer = await decide(client, admin, check())
    assert (answer["allowed"], answer["reason"]) == (True, "consent_granted")
    assert answer["consent_record_id"] == receipt["id"]


async def test_withdrawal_stops_the_next_check(client, admin):
    await write(client, admin, record(purpose="personalization", region="DE", at=iso(-60)))
    assert (await decide(client, admin, check()))["allowed"] is True
    await write(client, admin, record(purpose="personalization", status="withdrawn", region="DE", at=iso(-1)))
    answer = await decide(client, admin, check())
    assert (answer["allowed"], answer["reason"]) == (False, "consent_withdrawn")


async def test_an_older_record_arriving_late_does_not_override_a_newer_one(client, admin):
    await write(
        client, admin, record(purpose="personalization", status="withdrawn", region="DE", at=iso(-10))
    )
    await write(
        client, admin, record(purpose="personalization", status="granted", region="DE", at=iso(-3600))
    )
    answer = await decide(client, admin, check())
    assert (answer["allowed"], answer["reason"]) == (False, "consent_withdrawn")


@pytest.mark.parametrize(
    ("context", "allowed", "reason"),
    [
        ({}, True, "opt_out_default_allow"),
        ({"gpc": True}, False, "gpc_opt_out"),
        ({"age": 14}, False, "minor_opt_in_required"),
        ({"age": 12}, False, "parental_consent_required"),
        ({"age": 16}, True, "opt_out_default_allow"),
    ],
)
async def test_ccpa_sale(client, admin, context, allowed, reason):
    answer = await decide(client, admin, check(purpose="sale", region="US-CA", **context))
    assert (answer["allowed"], answer["reason"], answer["policy"]["regime"]) == (allowed, reason, "us_ca")


async def test_gpc_overrides_an_earlier_ccpa_sale_grant(client, admin):
    await write(client, admin, record(purpose="sale", region="US-CA", at=iso(-60)))
    answer = await decide(client, admin, check(purpose="sale", region="US-CA", gpc=True))
    assert (answer["allowed"], answer["reason"]) == (False, "gpc_opt_out")


@pytest.mark.parametrize("region", ["ZZ", None, "AQ"])
async def test_unknown_or_unmapped_region_gets_the_strict_default(client, admin, region):
    body = check(region=region)
    if region is None:
        del body["region"]
    answer = await decide(client, admin, body)
    assert (answer["allowed"], answer["reason"]) == (False, "unknown_region_strict_default")
    assert answer["policy"]["regime"] == "strict_default"


async def test_check_by_subject_id(client, admin):
    (receipt,) = await write(client, admin, record(purpose="personalization", region="DE", at=iso(-60)))
    answer = await decide(
        client,
        admin,
        {"subject": {"id": receipt["subject_id"]}, "purpose": "personalization", "region": "DE"},
    )
    assert (answer["allowed"], answer["consent_record_id"]) == (True, receipt["id"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (check(purpose="no_such_purpose"), "purpose"),
        (check(region="XX-999"), "region"),
        (check(email="not an email"), "subject.identifiers[0].value"),
        ({"subject": {}, "purpose": "personalization", "region": "DE"}, "subject"),
        (
            {
                "subject": {
                    "id": "0190a0b0-0000-7000-8000-000000000000",
                    "identifiers": [{"type": "email", "value": "a@b.co"}],
                },
                "purpose": "personalization",
            },
            "subject",
        ),
        (check(age=-1), "context.age"),
        ({**check(), "extra": 1}, None),
    ],
)
async def test_malformed_check_is_a_422_problem_naming_the_field(client, admin, body, field):
    response = await client.post("/v1/decisions", json=body, headers=admin)
    assert response.status_code in (400, 422), response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert response.status_code == 422
        assert any(e["field"].startswith(field) for e in response.json()["errors"]), response.json()


async def test_the_openapi_document_says_a_subject_is_named_by_exactly_one_of_identifiers_or_id(client):
    """The two cases the test above refuses (neither, both) are refused by the document's schema too, so a
    client generated from it does not learn the rule from a 422."""
    schemas = (await client.get("/schema/openapi.json")).json()["components"]["schemas"]
    subject = schemas["SubjectRef"]
    assert subject["additionalProperties"] is False
    branches = {tuple(branch["required"]): branch["properties"] for branch in subject["oneOf"]}
    assert branches == {
        ("identifiers",): {"identifiers": {"not": {"type": "null"}}, "id": {"type": "null"}},
        ("id",): {"identifiers": {"type": "null"}, "id": {"not": {"type": "null"}}},
    }


async def test_malformed_json_is_a_400_problem(client, admin):
    response = await client.post(
        "/v1/decisions", content=b'{"subject": ', headers={**admin, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_check_needs_the_decisions_scope(client, keys):
    response = await client.post("/v1/decisions", json=check(), headers=await keys.of("consents:write"))
    assert response.status_code == 403
    response = await client.post("/v1/decisions", json=check())
    assert response.status_code == 401


async def test_recorded_decision_explains_itself_without_identifiers(client, admin, keys, conn):
    (receipt,) = await write(client, admin, record(purpose="personalization", region="DE", at=iso(-60)))
    engine = await keys.of("decisions:check")
    answer = await decide(client, engine, check(gpc=True, existing_customer=True))
    response = await client.get(f"/v1/decisions/{answer['decision_id']}", headers=admin)
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["decision_id"] == answer["decision_id"]
    assert shown["subject_id"] == receipt["subject_id"]
    assert shown["context"] == {"gpc": True, "age": None, "sensitive": False, "existing_customer": True}
    assert (shown["allowed"], shown["reason"]) == (True, "consent_granted")
    assert shown["policy"] == answer["policy"]
    assert shown["consent_record"]["id"] == receipt["id"]
    assert shown["consent_record"]["source"]["system"] == "shop-web"
    assert "consented" in shown["explanation"]
    key_id = engine["Authorization"].split("_")[1]
    assert shown["api_key_id"] == key_id
    assert "ann@" not in response.text
    # and the stored row holds no identifier either
    row = await conn.fetchrow("SELECT * FROM audit_log WHERE entry_id = $1::uuid", answer["decision_id"])
    assert row["action"] == "decision.made" and "ann" not in repr(dict(row))


async def test_unknown_decision_is_404(client, admin):
    response = await client.get("/v1/decisions/0190a0b0-0000-7000-8000-000000000000", headers=admin)
    assert response.status_code == 404


async def test_concurrent_checks_are_each_recorded_once(client, admin, conn):
    answers = await asyncio.gather(
        *(decide(client, admin, check(email=f"c{i}@example.com")) for i in range(50))
    )
    assert len({a["decision_id"] for a in answers}) == 50
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'decision.made'") == 50


async def test_batch_answers_in_order_and_records_every_item(client, admin, conn):
    await write(
        client,
        admin,
        record(email="g@example.com", purpose="sale", status="denied", region="US-CA", at=iso(-5)),
    )
    items = [
        check(email=f"b{i}@example.com", purpose="sale", region="US-CA", gpc=i % 2 == 0) for i in range(100)
    ]
    items.append(check(email="g@example.com", purpose="sale", region="US-CA"))
    response = await client.post("/v1/decisions/batch", json={"items": items}, headers=admin)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["allowed"] for r in results[:100]] == [i % 2 == 1 for i in range(100)]
    assert results[100]["reason"] == "consent_denied"
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'decision.made'") == 101


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"items": []}, 422),
        ({"items": [check()] * 10_001}, 422),
        ({"items": [check(), check(purpose="nope")]}, 422),
    ],
)
async def test_bad_batch_is_refused_whole(client, admin, conn, body, status):
    response = await client.post("/v1/decisions/batch", json=body, headers=admin)
    assert response.status_code == status, response.text
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'decision.made'") == 0


async def test_replay_sees_the_grant_before_the_withdrawal(client, admin):
    await write(client, admin, record(purpose="personalization", region="DE", at=iso(-120)))
    await write(
        client, admin, record(purpose="personalization", status="withdrawn", region="DE", at=iso(-60))
    )
    body = {**check(), "at": iso(-90)}
    response = await client.post("/v1/decisions/replay", json=body, headers=admin)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["allowed"], answer["reason"], answer["replay"]) == (True, "consent_granted", True)
    now = (await client.post("/v1/decisions/replay", json={**check(), "at": iso()}, headers=admin)).json()
    assert (now["allowed"], now["reason"]) == (False, "consent_withdrawn")


async def test_replay_as_known_ignores_records_that_arrived_later(client, admin):
    # A grant collected two minutes ago but only received now: legally in force a minute ago, yet unknown then.
    await write(client, admin, record(purpose="personalization", region="DE", at=iso(-120)))
    body = {**check(), "at": iso(-60)}
    legal = (await client.post("/v1/decisions/replay", json=body, headers=admin)).json()
    known = (await client.post("/v1/decisions/replay", json={**body, "as_known": True}, headers=admin)).json()
    assert (legal["allowed"], known["allowed"]) == (True, False)
    assert known["reason"] == "no_consent_opt_in_required"


async def test_replay_with_an_unknown_policy_version_is_404(client, admin):
    body = {**check(), "at": iso(), "policy_version": "1999-01-01+000000000000"}
    response = await client.post("/v1/decisions/replay", json=body, headers=admin)
    assert response.status_code == 404


async def test_policy_version_is_stored_in_full_and_listed(client, admin):
    answer = await decide(client, admin, check())
    version = answer["policy"]["version"]
    listed = (await client.get("/v1/policies/versions", headers=admin)).json()
    assert [v["version"] for v in listed] == [version]
    shown = (await client.get(f"/v1/policies/versions/{version}", headers=admin)).json()
    assert "regions.toml" in shown["files"] and "regimes/eu_gdpr.toml" in shown["files"]


async def test_a_bad_batch_names_every_bad_item(client, admin):
    items = [check(), check(purpose="nope"), check(), check(region="XX-999"), check(email="@")]
    response = await client.post("/v1/decisions/batch", json={"items": items}, headers=admin)
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["items[1].purpose", "items[3].region", "items[4].subject.identifiers[0].value"]


async def test_oversized_batch_body_is_413_problem(client, admin):
    # The test settings cap bodies at 8 MiB; 10,000 items with long identifiers pass it.
    items = [check(email=f"{'x' * 60}{i}@{'y' * 800}.com") for i in range(10_000)]
    response = await client.post("/v1/decisions/batch", json={"items": items}, headers=admin)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_same_check_twice_is_two_recorded_decisions(client, admin, conn):
    first, second = await decide(client, admin, check()), await decide(client, admin, check())
    assert first["decision_id"] != second["decision_id"]
    assert (first["allowed"], first["reason"]) == (second["allowed"], second["reason"])
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'decision.made'") == 2


async def test_replay_can_reapply_an_older_policy_version(client, admin, conn):
    """A policy version kept in the database is re-applied as it was: here one where Germany had opt-out."""
    files = dict(await conn.fetchval("SELECT files FROM policy_versions"))
    files["regimes/eu_gdpr.toml"] = files["regimes/eu_gdpr.toml"].replace(
        'purposes = ["personalization", "analytics", "targeted_advertising", "profiling"]\nmodel = "opt_in"',
        'purposes = ["personalization", "analytics", "targeted_advertising", "profiling"]\nmodel = "opt_out"',
    )
    older = build_policies(files).version
    await conn.execute(
        "INSERT INTO policy_versions (version, files, declared) VALUES ($1, $2, '{}')", older, files
    )
    body = {**check(), "at": iso(), "policy_version": older}
    response = await client.post("/v1/decisions/replay", json=body, headers=admin)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["allowed"], answer["reason"]) == (True, "opt_out_default_allow")
    assert answer["policy"]["version"] == older
    current = (await client.post("/v1/decisions/replay", json={**check(), "at": iso()}, headers=admin)).json()
    assert (current["allowed"], current["reason"]) == (False, "no_consent_opt_in_required")


async def test_decisions_land_in_monthly_audit_partitions_made_ahead(client, admin, conn):
    await decide(client, admin, check())
    partitions = await conn.fetch(
        "SELECT c.relname, count(d.*) FILTER (WHERE d.action = 'decision.made') AS n FROM pg_inherits i "
        "JOIN pg_class c ON c.oid = i.inhrelid LEFT JOIN audit_log d ON d.tableoid = c.oid "
        "WHERE i.inhparent = 'audit_log'::regclass GROUP BY c.relname"
    )
    by_name = {r["relname"]: r["n"] for r in partitions}
    this_month = datetime.now(UTC).strftime("audit_log_%Y%m")
    assert by_name[this_month] == 1 and by_name["audit_log_default"] == 0
    assert len([n for n in by_name if n != "audit_log_default"]) >= 3  # this month and two ahead


@pytest.mark.parametrize(
    "decision_id",
    [
        "eeebff38-e6f0-5fb4-9e0b-cd0c6be80ba8",
        "ffffffff-ffff-7fff-bfff-ffffffffffff",
        "00000000-0000-0000-0000-000000000000",
    ],
)
async def test_an_id_that_is_no_decision_id_is_404_not_500(client, admin, decision_id):
    response = await client.get(f"/v1/decisions/{decision_id}", headers=admin)
    assert response.status_code == 404


async def test_workers_making_partitions_at_once_do_not_collide(db_url, conn):
    import asyncpg

    others = [await asyncpg.connect(db_url) for _ in range(4)]
    try:
        await asyncio.gather(*(c.execute("SELECT ensure_audit_partitions(6)") for c in others))
    finally:
        for c in others:
            await c.close()
    made = await conn.fetchval(
        "SELECT count(*) FROM pg_inherits WHERE inhparent = 'audit_log'::regclass "
        "AND inhrelid::regclass::text <> 'audit_log_default'"
    )
    assert made == 7  # this month and six ahead


async def test_gpc_opts_the_known_california_consumer_out_for_later_requests_too(client, admin):
    """CCPA regs 7025(c)(1) and (c)(5): the signal opts out the known consumer; its later absence is no opt-in."""
    (receipt,) = await write(client, admin, record(purpose="email_marketing", region="US-CA", at=iso(-60)))
    with_signal = await decide(client, admin, check(purpose="sale", region="US-CA", gpc=True))
    assert (with_signal["allowed"], with_signal["reason"]) == (False, "gpc_opt_out")
    found = await gpc_records(client, admin, receipt["subject_id"], want=3)
    assert sorted(r["purpose"] for r in found) == ["sale", "share", "targeted_advertising"]
    assert {r["status"] for r in found} == {"denied"}
    assert {r["proof"]["decision_id"] for r in found} == {with_signal["decision_id"]}
    for purpose in ("sale", "share", "targeted_advertising"):
        later = await decide(client, admin, check(purpose=purpose, region="US-CA"))
        assert (later["allowed"], later["reason"]) == (False, "consent_denied"), purpose
    # The consumer may still opt back in: a later grant wins by collection time.
    await write(client, admin, record(purpose="sale", region="US-CA", at=iso(1)))
    assert (await decide(client, admin, check(purpose="sale", region="US-CA")))["reason"] == "consent_granted"


async def test_a_page_views_checks_with_gpc_record_each_opt_out_once(client, admin):
    """The checks of one page view arrive together, all carrying the signal: one refusal per purpose, not one
    per check; and a purpose the consumer had refused already gets none."""
    (receipt,) = await write(
        client, admin, record(purpose="share", status="denied", region="US-CA", at=iso(-60))
    )
    purposes = ("sale", "share", "targeted_advertising") * 3
    answers = await asyncio.gather(
        *(decide(client, admin, check(purpose=p, region="US-CA", gpc=True)) for p in purposes)
    )
    assert {a["allowed"] for a in answers} == {False}
    found = await gpc_records(client, admin, receipt["subject_id"], want=2)
    await asyncio.sleep(0.5)  # time for any duplicate to land
    found = await gpc_records(client, admin, receipt["subject_id"], want=3, timeout=0.3)
    assert sorted(r["purpose"] for r in found) == ["sale", "targeted_advertising"]


async def test_gpc_of_an_unknown_consumer_creates_no_subject(client, admin):
    answer = await decide(
        client, admin, check(email="nobody@example.com", purpose="sale", region="US-CA", gpc=True)
    )
    assert answer["reason"] == "gpc_opt_out"
    await asyncio.sleep(0.3)
    lookup = await client.post(
        "/v1/subjects/lookup",
        json={"identifiers": [{"type": "email", "value": "nobody@example.com"}]},
        headers=admin,
    )
    assert lookup.status_code == 404


async def test_gpc_where_the_law_binds_only_the_request_records_nothing(client, admin):
    (receipt,) = await write(client, admin, record(purpose="email_marketing", region="US-CO", at=iso(-60)))
    answer = await decide(client, admin, check(purpose="sale", region="US-CO", gpc=True))
    assert answer["reason"] == "gpc_opt_out"
    assert await gpc_records(client, admin, receipt["subject_id"], want=1, timeout=0.5) == []
    assert (await decide(client, admin, check(purpose="sale", region="US-CO")))[
        "reason"
    ] == "opt_out_default_allow"


async def test_a_grant_given_after_a_gpc_refusal_is_not_overwritten_by_the_next_signal(client, admin):
    """CCPA regs 7025(c)(3): the business may ask again after the conflict; a consent given then stands,
    even while the signal is still sent, and the next signal does not overwrite it."""
    (receipt,) = await write(client, admin, record(purpose="sale", region="US-CA", at=iso(-60)))
    await decide(client, admin, check(purpose="sale", region="US-CA", gpc=True))
    assert len(await gpc_records(client, admin, receipt["subject_id"], want=3)) == 3
    await write(client, admin, record(purpose="sale", region="US-CA", at=iso(1)))
    again = await decide(client, admin, check(purpose="sale", region="US-CA", gpc=True))
    assert (again["allowed"], again["reason"]) == (
        True,
        "consent_granted",
    )  # asked after the conflict: it stands
    await asyncio.sleep(0.5)
    assert len(await gpc_records(client, admin, receipt["subject_id"], want=4, timeout=0.5)) == 3
    later = await decide(client, admin, check(purpose="sale", region="US-CA"))
    assert later["reason"] == "consent_granted"


async def test_a_replay_at_a_live_checks_instant_answers_as_it_did_after_a_gpc_refusal_and_a_new_grant(
    client, admin
):
    """One pure engine decides live checks and replays: a grant given after the signal was recorded as the
    consumer's refusal (CCPA regs 7025(c)(3)) stands in both, from the same state."""
    (receipt,) = await write(client, admin, record(purpose="sale", region="US-CA", at=iso(-60)))
    signalled = await decide(client, admin, check(purpose="sale", region="US-CA", gpc=True))
    assert signalled["reason"] == "gpc_opt_out"
    assert len(await gpc_records(client, admin, receipt["subject_id"], want=3)) == 3
    await asyncio.sleep(0.01)  # the new grant is collected after the recorded refusal, and before the check
    (regrant,) = await write(client, admin, record(purpose="sale", region="US-CA", at=iso()))
    live = await decide(client, admin, check(purpose="sale", region="US-CA", gpc=True))
    replayed = await client.post(
        "/v1/decisions/replay",
        json={**check(purpose="sale", region="US-CA", gpc=True), "at": live["evaluated_at"]},
        headers=admin,
    )
    assert replayed.status_code == 200, replayed.text
    replay = replayed.json()
    assert (live["allowed"], live["reason"], live["consent_record_id"]) == (
        True,
        "consent_granted",
        regrant["id"],
    )
    assert (replay["allowed"], replay["reason"], replay["consent_record_id"]) == (
        live["allowed"],
        live["reason"],
        live["consent_record_id"],
    )
    # Before the new grant, the replay sees the recorded refusal, as the live check after the signal did.
    before = await client.post(
        "/v1/decisions/replay",
        json={**check(purpose="sale", region="US-CA", gpc=True), "at": signalled["evaluated_at"]},
        headers=admin,
    )
    assert before.json()["allowed"] is False


async def test_identifiers_of_two_subjects_are_a_409_not_a_guess(client, admin, conn):
    await write(
        client,
        admin,
        record(email="a@example.com", purpose="personalization", status="withdrawn", region="DE", at=iso(-5)),
    )
    await write(
        client, admin, record(email="b@example.com", purpose="personalization", region="DE", at=iso(-5))
    )
    both = {"type": "email", "value": "a@example.com"}, {"type": "email", "value": "b@example.com"}
    for order in (both, both[::-1]):
        body = {"subject": {"identifiers": list(order)}, "purpose": "personalization", "region": "DE"}
        response = await client.post("/v1/decisions", json=body, headers=admin)
        assert response.status_code == 409, response.text
        replay = await client.post("/v1/decisions/replay", json={**body, "at": iso()}, headers=admin)
        assert replay.status_code == 409
    batch_body = {
        "items": [
            check(email="c@example.com"),
            {"subject": {"identifiers": list(both)}, "purpose": "personalization", "region": "DE"},
        ]
    }
    response = await client.post("/v1/decisions/batch", json=batch_body, headers=admin)
    assert response.status_code == 409
    assert [e["field"] for e in response.json()["errors"]] == ["items[1].subject.identifiers"]
    assert await conn.fetchval("SELECT count(*) FROM audit_log WHERE action = 'decision.made'") == 0


async def test_checks_sharing_a_round_trip_with_a_conflicting_one_are_answered(client, admin):
    await write(
        client, admin, record(email="a@example.com", purpose="personalization", region="DE", at=iso(-5))
    )
    await write(
        client, admin, record(email="b@example.com", purpose="personalization", region="DE", at=iso(-5))
    )
    bad = {
        "subject": {
            "identifiers": [
                {"type": "email", "value": "a@example.com"},
                {"type": "email", "value": "b@example.com"},
            ]
        },
        "purpose": "personalization",
        "region": "DE",
    }
    responses = await asyncio.gather(
        *(
            client.post("/v1/decisions", json=bad if i == 3 else check(email="a@example.com"), headers=admin)
            for i in range(8)
        )
    )
    assert [r.status_code for r in responses] == [200, 200, 200, 409, 200, 200, 200, 200]


async def test_a_tie_in_collection_time_is_settled_the_same_live_and_in_replay(client, admin):
    at = iso(-30)
    await write(
        client,
        admin,
        record(purpose="personalization", region="DE", at=at),
        record(purpose="personalization", status="withdrawn", region="DE", at=at),
        record(purpose="personalization", region="DE", at=at, source={"system": "other"}),
    )
    live = await decide(client, admin, check())
    replay = (await client.post("/v1/decisions/replay", json={**check(), "at": iso()}, headers=admin)).json()
    assert (live["reason"], replay["reason"]) == ("consent_withdrawn", "consent_withdrawn")


async def test_replay_reads_at_in_utc(client, admin):
    """The DSA ban on profiling ads to minors starts on 2024-02-17 (a UTC day), however the instant is written."""
    body = {**check(purpose="targeted_advertising", age=17), "context": {"age": 17}}
    early = (
        await client.post(
            "/v1/decisions/replay", json={**body, "at": "2024-02-16T23:30:00-05:00"}, headers=admin
        )
    ).json()
    same = (
        await client.post("/v1/decisions/replay", json={**body, "at": "2024-02-17T04:30:00Z"}, headers=admin)
    ).json()
    assert early["reason"] == same["reason"] == "minor_prohibited"


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"at": "0001-01-01T00:00:00+01:00"}, 422),
        ({"at": "9999-12-31T23:59:59-01:00"}, 422),
        ({"at": "2026-01-01T00:00:00Z", "policy_version": "a\u0000b"}, 422),
    ],
)
async def test_replay_input_out_of_range_is_a_4xx(client, admin, body, status):
    response = await client.post("/v1/decisions/replay", json={**check(), **body}, headers=admin)
    assert response.status_code == status, response.text


async def test_a_policy_version_with_odd_characters_is_404(client, admin):
    response = await client.get("/v1/policies/versions/a%00b", headers=admin)
    assert response.status_code == 404
