"""The customers' side: no API key, no enumeration, one-time codes, rate limits, one-time export links."""

from __future__ import annotations

import msgspec
import pytest

from tests.consents.helpers import batch, record
from tests.requests.helpers import code_for

KNOWN = "known@example.com"


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(settings, public_rate_per_address=1000, public_rate_per_identifier=1000)


def ask(email: str, kind: str = "access", region: str = "DE") -> dict:
    return {"type": kind, "subject": {"identifiers": [{"type": "email", "value": email}]}, "region": region}


async def test_known_and_unknown_identifiers_get_the_same_answer(client, admin):
    await client.post("/v1/consents", json=batch(record(KNOWN, "analytics", region="DE")), headers=admin)
    known = await client.post("/public/requests", json=ask(KNOWN))
    unknown = await client.post("/public/requests", json=ask("nobody@example.com"))
    assert known.status_code == unknown.status_code == 202
    a, b = known.json(), unknown.json()
    assert a.keys() == b.keys()
    assert {k: v for k, v in a.items() if k not in ("id", "received_at")} == {
        k: v for k, v in b.items() if k not in ("id", "received_at")
    }
    assert a["status"] == "verifying"


async def test_the_code_verifies_the_request_and_the_export_link_works_once(
    client, admin, conn, settings, keys
):
    await client.post("/v1/consents", json=batch(record(KNOWN, "analytics", region="DE")), headers=admin)
    made = (await client.post("/public/requests", json=ask(KNOWN))).json()
    code = await code_for(conn, settings, made["id"])
    wrong = await client.post(
        f"/public/requests/{made['id']}/verify", json={"code": "00000000" if code != "00000000" else "1"}
    )
    assert wrong.status_code == 422 and "tries left" in wrong.json()["detail"]
    right = await client.post(f"/public/requests/{made['id']}/verify", json={"code": code})
    assert right.status_code == 200, right.text
    assert right.json()["status"] == "verified"
    again = await client.post(f"/public/requests/{made['id']}/verify", json={"code": code})
    assert again.status_code == 404  # the code is used up
    staff = await keys.of("requests:manage")
    link = await client.post(f"/v1/requests/{made['id']}/export-link", headers=staff)
    assert link.status_code == 201, link.text
    url = link.json()["url"]
    assert KNOWN not in url
    download = await client.get(url)
    assert download.status_code == 200
    assert KNOWN in download.text and "analytics" in download.text
    assert (await client.get(url)).status_code == 410  # once only
    assert (await client.get("/public/exports/not-a-token")).status_code == 410


async def test_code_brute_force_locks_the_request(client, conn, settings):
    made = (await client.post("/public/requests", json=ask("eve@example.com"))).json()
    code = await code_for(conn, settings, made["id"])
    guess = "12345678" if code != "12345678" else "87654321"
    answers = [
        (await client.post(f"/public/requests/{made['id']}/verify", json={"code": guess})).status_code
        for _ in range(settings.public_code_attempts)
    ]
    assert answers == [422] * (settings.public_code_attempts - 1) + [409]
    locked = await client.post(f"/public/requests/{made['id']}/verify", json={"code": code})
    assert locked.status_code == 409  # even the right code, once locked
    status = (await client.get(f"/public/requests/{made['id']}")).json()
    assert status["status"] == "verifying"


async def test_an_opt_out_needs_no_code(client, admin, conn):
    made = await client.post("/public/requests", json=ask(KNOWN, "opt_out_of_sale", "US-CA"))
    assert made.status_code == 202 and made.json()["status"] == "completed"
    check = {
        "subject": {"identifiers": [{"type": "email", "value": KNOWN}]},
        "purpose": "sale",
        "region": "US-CA",
    }
    assert (await client.post("/v1/decisions", json=check, headers=admin)).json()["allowed"] is False
    assert await conn.fetchval("SELECT count(*) FROM request_codes") == 0


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b'{"type": "access"}', 422),
        (
            msgspec.json.encode(
                {**ask("x@example.com"), "subject": {"identifiers": [{"type": "email", "value": "nope"}]}}
            ),
            422,
        ),
        (msgspec.json.encode({**ask("x@example.com"), "details": {"text": "x" * 20_000}}), 413),
        (msgspec.json.encode({**ask("x@example.com"), "region": "Atlantis"}), 422),
    ],
)
async def test_bad_public_input_is_a_clear_4xx(client, body, status):
    response = await client.post(
        "/public/requests", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_resubmission_answers_the_same_request(client):
    first = (await client.post("/public/requests", json=ask("fay@example.com"))).json()
    second = (await client.post("/public/requests", json=ask("fay@example.com"))).json()
    assert first["id"] == second["id"]
