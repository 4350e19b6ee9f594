"""The ledger through its HTTP API: what a caller writing and reading consent sees."""

from __future__ import annotations

import json

import pytest

from tests.consents.helpers import batch, record


async def write(client, headers, *records, **kw):
    response = await client.post(
        "/v1/consents", json=batch(*records), headers={**headers, **kw.get("extra", {})}
    )
    return response


async def test_record_is_acknowledged_with_ids(client, admin):
    response = await write(client, admin, record())
    assert response.status_code == 201, response.text
    (receipt,) = response.json()["records"]
    assert set(receipt) == {"id", "subject_id", "received_at", "duplicate"}
    assert receipt["duplicate"] is False


async def test_email_is_normalized_so_variants_are_one_subject(client, admin):
    response = await write(
        client, admin, record("Ann@Example.COM"), record("  ann@example.com ", at="2026-11-21T10:00:00Z")
    )
    ids = {r["subject_id"] for r in response.json()["records"]}
    assert len(ids) == 1
    lookup = await client.post(
        "/v1/subjects/lookup",
        json={"identifiers": [{"type": "email", "value": "ANN@example.com"}]},
        headers=admin,
    )
    assert lookup.status_code == 200
    assert lookup.json() == {"subject_id": ids.pop()}


@pytest.mark.parametrize(
    ("national", "international", "region"),
    [
        ({"type": "phone", "value": "415.555.0132"}, "+1 (415) 555-0132", "US-NY"),  # the record's region
        (
            {"type": "phone", "value": "06 12 34 56 78", "default_region": "FR"},
            "+33612345678",
            "ZZ",
        ),  # its own
    ],
)
async def test_national_and_international_forms_of_a_phone_are_one_subject(
    client, admin, national, international, region
):
    records = [
        record(
            identifiers=[{"type": "phone", "value": international}], purpose="sms_marketing", region=region
        ),
        record(identifiers=[national], purpose="sms_marketing", region=region, at="2026-11-21T10:00:00Z"),
    ]
    response = await write(client, admin, *records)
    assert response.status_code == 201, response.text
    assert len({r["subject_id"] for r in response.json()["records"]}) == 1


async def test_unparseable_phone_is_422_naming_the_field(client, admin):
    response = await write(client, admin, record(identifiers=[{"type": "phone", "value": "call me maybe"}]))
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "records[0].subject.identifiers[0].value"
    assert "call me maybe" not in response.text


async def test_late_arriving_older_record_is_kept_but_does_not_change_state(client, admin):
    first = await write(
        client,
        admin,
        record(status="granted", at="2026-01-01T00:00:00Z"),
        record(status="withdrawn", at="2026-03-01T00:00:00Z"),
    )
    subject_id = first.json()["records"][0]["subject_id"]
    late = await write(client, admin, record(status="granted", at="2026-02-01T00:00:00Z"))
    assert late.status_code == 201
    view = (await client.get(f"/v1/subjects/{subject_id}", headers=admin)).json()
    (state,) = [c for c in view["consents"] if c["purpose"] == "email_marketing"]
    assert state["status"] == "withdrawn"
    assert state["collected_at"].startswith("2026-03-01")
    history = (await client.get(f"/v1/subjects/{subject_id}/consents", headers=admin)).json()["records"]
    assert [h["collected_at"][:10] for h in history] == ["2026-03-01", "2026-02-01", "2026-01-01"]


async def test_within_one_batch_the_latest_collected_wins_whatever_the_order(client, admin):
    response = await write(
        client,
        admin,
        record(status="withdrawn", at="2026-05-01T00:00:00Z"),
        record(status="granted", at="2026-04-01T00:00:00Z"),
    )
    subject_id = response.json()["records"][0]["subject_id"]
    view = (await client.get(f"/v1/subjects/{subject_id}", headers=admin)).json()
    assert view["consents"][0]["status"] == "withdrawn"


async def test_subject_view_masks_identifiers(client, admin):
    response = await write(client, admin, record("ann.smith@example.com"))
    subject_id = response.json()["records"][0]["subject_id"]
    view = await client.get(f"/v1/subjects/{subject_id}", headers=admin)
    assert view.status_code == 200
    assert "ann.smith" not in view.text and "example.com" not in view.text
    assert view.json()["identifiers"] == [{"type": "email", "masked": "a***@e***.com"}]


async def test_several_identifiers_link_to_one_subject(client, admin):
    both = record(
        identifiers=[{"type": "email", "value": "bo@example.com"}, {"type": "customer_id", "value": "C-1"}]
    )
    subject_id = (await write(client, admin, both)).json()["records"][0]["subject_id"]
    by_customer = await client.post(
        "/v1/subjects/lookup", json={"identifiers": [{"type": "customer_id", "value": "C-1"}]}, headers=admin
    )
    assert by_customer.json()["subject_id"] == subject_id


async def test_identifiers_of_two_subjects_in_one_record_is_409_not_a_merge(client, admin):
    first = await write(client, admin, record("one@example.com"), record("two@example.com"))
    one, two = (r["subject_id"] for r in first.json()["records"])
    both = record(
        identifiers=[
            {"type": "email", "value": "one@example.com"},
            {"type": "email", "value": "two@example.com"},
        ]
    )
    response = await write(client, admin, both)
    assert response.status_code == 409
    assert response.headers["content-type"].startswith("application/problem+json")
    (error,) = response.json()["errors"]
    assert error["field"] == "records[0].subject.identifiers"
    assert one in error["message"] and two in error["message"]
    assert "one@example.com" not in response.text
    lookup = await client.post(
        "/v1/subjects/lookup", json={"identifiers": both["subject"]["identifiers"]}, headers=admin
    )
    assert lookup.status_code == 409


async def test_batch_linking_two_existing_subjects_through_a_new_identifier_is_409(client, admin):
    await write(client, admin, record("one@example.com"), record("two@example.com"))
    response = await write(
        client,
        admin,
        record(
            identifiers=[{"type": "email", "value": "one@example.com"}, {"type": "customer_id", "value": "X"}]
        ),
        record(
            identifiers=[{"type": "email", "value": "two@example.com"}, {"type": "customer_id", "value": "X"}]
        ),
    )
    assert response.status_code == 409
    lookup = await client.post(
        "/v1/subjects/lookup", json={"identifiers": [{"type": "customer_id", "value": "X"}]}, headers=admin
    )
    assert lookup.status_code == 404


async def test_resent_record_is_marked_duplicate_and_stored_once(client, admin):
    first = (await write(client, admin, record())).json()["records"][0]
    again = (await write(client, admin, record(), record())).json()["records"]
    assert [r["duplicate"] for r in again] == [True, True]
    assert {r["id"] for r in again} == {first["id"]}
    history = (await client.get(f"/v1/subjects/{first['subject_id']}/consents", headers=admin)).json()
    assert len(history["records"]) == 1


async def test_idempotency_key_replays_the_first_answer(client, admin):
    headers = {**admin, "Idempotency-Key": "abc-123"}
    one = await client.post("/v1/consents", json=batch(record()), headers=headers)
    two = await client.post("/v1/consents", json=batch(record()), headers=headers)
    assert one.status_code == two.status_code == 201
    assert one.json() == two.json()
    assert two.headers.get("idempotent-replayed") == "true"


async def test_idempotency_key_with_another_body_is_422(client, admin):
    headers = {**admin, "Idempotency-Key": "abc-123"}
    await client.post("/v1/consents", json=batch(record()), headers=headers)
    other = await client.post("/v1/consents", json=batch(record(status="denied")), headers=headers)
    assert other.status_code == 422
    assert other.headers["content-type"].startswith("application/problem+json")


async def test_batch_is_all_or_nothing(client, admin):
    response = await write(client, admin, record("ok@example.com"), record("bad@example.com", purpose="nope"))
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"field": "records[1].purpose", "message": response.json()["errors"][0]["message"]}
    ]
    lookup = await client.post(
        "/v1/subjects/lookup",
        json={"identifiers": [{"type": "email", "value": "ok@example.com"}]},
        headers=admin,
    )
    assert lookup.status_code == 404


BAD_BODIES = {
    "unknown purpose": (batch(record(purpose="telepathy")), "records[0].purpose"),
    "naive timestamp": (batch(record(at="2026-01-01T00:00:00")), "records[0].collected_at"),
    "future timestamp": (batch(record(at="2099-01-01T00:00:00Z")), "records[0].collected_at"),
    "bad status": (batch(record(status="maybe")), "records[0].status"),
    "bad region": (batch(record(region="Narnia")), "records[0].region"),
    "unknown subdivision": (batch(record(region="US-XX")), "records[0].region"),
    "empty identifiers": (batch(record(identifiers=[])), "records[0].subject.identifiers"),
    "unknown identifier type": (
        batch(record(identifiers=[{"type": "ssn", "value": "1"}])),
        "records[0].subject.identifiers[0].type",
    ),
    "bad email": (batch(record("not-an-email")), "records[0].subject.identifiers[0].value"),
    "empty records": ({"records": []}, "records"),
    "records not a list": ({"records": {}}, "records"),
    "missing records": ({}, "body"),
    "unknown top-level field": ({"records": [record()], "extra": 1}, "body"),
    "unknown record field": (batch({**record(), "colour": "red"}), "records[0]"),
    "wrong type": (batch({**record(), "purpose": 7}), "records[0].purpose"),
    "expiry before collection": (batch(record(expires_at="2026-01-01T00:00:00Z")), "records[0].expires_at"),
    "bad actor": (batch({**record(), "source": {"system": "x", "actor": "cat"}}), "records[0].source.actor"),
    "NUL in source": (batch({**record(), "source": {"system": "crm\u0000"}}), "records[0].source.system"),
    "year out of range": (batch(record(at="0001-01-01T00:00:00+14:00")), "records[0].collected_at"),
    "expiry out of range": (batch(record(expires_at="9999-12-31T23:59:59-14:00")), "records[0].expires_at"),
}


@pytest.mark.parametrize("label", list(BAD_BODIES))
async def test_bad_input_is_a_problem_naming_the_field(client, admin, label):
    body, field = BAD_BODIES[label]
    response = await client.post("/v1/consents", json=body, headers=admin)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert {"type", "title", "status", "detail", "errors"} <= set(problem)
    assert problem["status"] == 422
    assert any(e["field"] == field for e in problem["errors"]), problem["errors"]


async def test_empty_body_is_422_asking_for_one(client, admin):
    response = await client.post(
        "/v1/consents", content=b"", headers={**admin, "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [{"field": "body", "message": "a JSON body is required"}]


@pytest.mark.parametrize(
    ("query", "field"), [("limit=0", "limit"), ("limit=x", "limit"), ("purpose=nope", "purpose")]
)
async def test_bad_history_query_is_422_naming_the_parameter(client, admin, query, field):
    subject_id = (await write(client, admin, record())).json()["records"][0]["subject_id"]
    response = await client.get(f"/v1/subjects/{subject_id}/consents?{query}", headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


async def test_too_many_records_is_422(client, admin):
    response = await client.post("/v1/consents", json=batch(*[record()] * 10_001), headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "records"


async def test_malformed_json_is_400_problem(client, admin):
    response = await client.post(
        "/v1/consents", content=b'{"records": [', headers={**admin, "content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["title"] == "The body is not valid JSON"


async def test_oversized_body_is_413_problem(client, admin):
    filler = json.dumps(batch(record(proof={"blob": "x" * (9 * 1024 * 1024)})))
    response = await client.post(
        "/v1/consents", content=filler, headers={**admin, "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_unknown_route_and_method_are_problems(client, admin):
    missing = await client.get("/v1/nothing-here", headers=admin)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(
        "application/problem+json"
    )
    wrong = await client.delete("/v1/consents", headers=admin)
    assert wrong.status_code == 405 and wrong.headers["content-type"].startswith("application/problem+json")


async def test_unknown_subject_is_404(client, admin):
    response = await client.get("/v1/subjects/00000000-0000-4000-8000-000000000000", headers=admin)
    assert response.status_code == 404
    assert response.json()["status"] == 404


async def test_history_pages_newest_first_and_filters_by_purpose(client, admin):
    records = [record(at=f"2026-01-{day:02d}T00:00:00Z") for day in range(1, 8)]
    records.append(record(purpose="analytics", at="2026-02-01T00:00:00Z"))
    subject_id = (await write(client, admin, *records)).json()["records"][0]["subject_id"]
    seen, cursor = [], None
    while True:
        params = {"purpose": "email_marketing", "limit": 3, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(f"/v1/subjects/{subject_id}/consents", params=params, headers=admin)).json()
        seen += [r["collected_at"][:10] for r in page["records"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"2026-01-{day:02d}" for day in range(7, 0, -1)]


async def test_bad_cursor_is_400_problem(client, admin):
    subject_id = (await write(client, admin, record())).json()["records"][0]["subject_id"]
    response = await client.get(
        f"/v1/subjects/{subject_id}/consents", params={"cursor": "garbage"}, headers=admin
    )
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_proof_is_returned_to_readers_and_encrypted_at_rest(client, admin, conn):
    response = await write(client, admin, record(proof={"form": "signup-v3", "ip": "203.0.113.7"}))
    subject_id = response.json()["records"][0]["subject_id"]
    history = (await client.get(f"/v1/subjects/{subject_id}/consents", headers=admin)).json()
    assert history["records"][0]["proof"] == {"form": "signup-v3", "ip": "203.0.113.7"}
    stored = await conn.fetchval("SELECT proof_enc FROM consent_records")
    assert b"203.0.113.7" not in stored


async def test_no_identifier_is_stored_in_clear(client, admin, conn):
    await write(
        client,
        admin,
        record("clear.text@example.com"),
        record(identifiers=[{"type": "phone", "value": "+14155550199"}], purpose="sms_marketing"),
    )
    dump = []
    for table in ("subjects", "subject_identifiers", "consent_records", "consent_state", "idempotency_keys"):
        dump += [repr(dict(row)) for row in await conn.fetch(f"SELECT * FROM {table}")]
    text = "\n".join(dump)
    assert "clear.text" not in text and "4155550199" not in text


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE consent_records SET status = 'granted'",
        "DELETE FROM consent_records",
        "TRUNCATE consent_records",
    ],
)
async def test_records_cannot_be_changed_or_removed_in_the_database(client, admin, conn, statement):
    import asyncpg

    await write(client, admin, record())
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await conn.execute(statement)
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 1


async def test_concurrent_batches_for_the_same_new_subject_make_one_subject(client, admin, conn):
    import asyncio

    emails = [f"race{i}@example.com" for i in range(20)]
    calls = [
        write(client, admin, *[record(e, purpose=p) for e in emails])
        for p in ("analytics", "personalization", "email_marketing", "sms_marketing")
    ]
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses] == [201] * 4
    assert await conn.fetchval("SELECT count(*) FROM subjects") == 20
    assert await conn.fetchval("SELECT count(*) FROM consent_state") == 80


async def test_expired_idempotency_key_is_free_again(client, admin, conn):
    from consent_svc import idempotency

    headers = {**admin, "Idempotency-Key": "old-key"}
    await client.post("/v1/consents", json=batch(record()), headers=headers)
    await conn.execute("UPDATE idempotency_keys SET created_at = created_at - interval '25 hours'")
    fresh = await client.post("/v1/consents", json=batch(record(status="denied")), headers=headers)
    assert fresh.status_code == 201 and "idempotent-replayed" not in fresh.headers
    await conn.execute("UPDATE idempotency_keys SET created_at = created_at - interval '25 hours'")
    assert await idempotency.delete_expired(conn, 24) == 1


async def test_concurrent_batches_in_opposite_orders_all_succeed(client, admin, conn):
    import asyncio

    emails = [f"order{i}@example.com" for i in range(200)]
    await write(client, admin, *[record(e, purpose="analytics") for e in emails[:100]])
    forward = [record(e, purpose=p) for p in ("analytics", "personalization") for e in emails]
    calls = [write(client, admin, *(forward if k % 2 else forward[::-1]), extra={}) for k in range(6)]
    responses = await asyncio.gather(*calls)
    assert [r.status_code for r in responses] == [201] * 6
    assert await conn.fetchval("SELECT count(*) FROM subjects") == 200
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 400


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{", 400),
        (b'{"identifiers": []}', 422),
        (b'{"identifiers": [{"type": "email", "value": "x"}]}', 422),
        (b'{"identifiers": [{"type": "email", "value": "a@b.co"}], "more": 1}', 422),
        (b'{"identifiers": [{"type": "email", "value": "a@b.co"}]}', 404),
    ],
)
async def test_lookup_rejects_bad_bodies_and_says_404_for_unknown(client, admin, body, status):
    response = await client.post(
        "/v1/subjects/lookup", content=body, headers={**admin, "content-type": "application/json"}
    )
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_lookup_oversized_body_is_413(client, admin):
    huge = json.dumps({"identifiers": [{"type": "email", "value": "a" * (9 * 1024 * 1024)}]})
    response = await client.post(
        "/v1/subjects/lookup", content=huge, headers={**admin, "content-type": "application/json"}
    )
    assert response.status_code == 413


async def test_equal_collected_at_across_batches_the_later_received_wins(client, admin):
    first = await write(client, admin, record(status="granted", at="2026-06-01T00:00:00Z"))
    await write(client, admin, record(status="withdrawn", at="2026-06-01T00:00:00Z"))
    subject_id = first.json()["records"][0]["subject_id"]
    view = (await client.get(f"/v1/subjects/{subject_id}", headers=admin)).json()
    assert view["consents"][0]["status"] == "withdrawn"


async def test_concurrent_calls_with_one_idempotency_key_store_once(client, admin, conn):
    import asyncio

    headers = {**admin, "Idempotency-Key": "same"}
    body = batch(*[record(f"idem{i}@example.com") for i in range(50)])
    responses = await asyncio.gather(
        *[client.post("/v1/consents", json=body, headers=headers) for _ in range(5)]
    )
    assert [r.status_code for r in responses] == [201] * 5
    assert len({r.text for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 4
    assert await conn.fetchval("SELECT count(*) FROM consent_records") == 50


async def test_subject_view_gives_each_purpose_its_record_and_source(client, admin):
    response = await write(
        client, admin, record(purpose="analytics", region="FR"), record(purpose="email_marketing")
    )
    ids = {r["id"] for r in response.json()["records"]}
    subject_id = response.json()["records"][0]["subject_id"]
    consents = (await client.get(f"/v1/subjects/{subject_id}", headers=admin)).json()["consents"]
    assert {c["record_id"] for c in consents} == ids
    analytics = next(c for c in consents if c["purpose"] == "analytics")
    assert analytics["region"] == "FR"
    assert analytics["source"] == record()["source"] | {"cmp": None, "actor": "subject"}
