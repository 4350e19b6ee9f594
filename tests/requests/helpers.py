"""What the request tests do through the API: submit and act on requests, seed consents, read the code a person is sent."""

from __future__ import annotations

import msgspec

from consent_svc import crypto, outbox
from tests.consents.helpers import batch, record

EMAIL = "dora@example.com"


SUBJECT = {"identifiers": [{"type": "email", "value": EMAIL}]}


async def submit(client, staff, expect: int = 201, **fields) -> dict:
    body = {"type": "access", "subject": SUBJECT, "region": "DE", "channel": "web", **fields}
    response = await client.post("/v1/requests", json=body, headers=staff)
    assert response.status_code == expect, response.text
    return response.json()


async def act(client, staff, request_id: str, action: str, expect: int = 200, **body) -> dict:
    response = await client.post(f"/v1/requests/{request_id}/{action}", json=body, headers=staff)
    assert response.status_code == expect, response.text
    return response.json()


async def seed_consents(client, admin) -> None:
    records = [
        record(EMAIL, purpose, "granted", region="DE", at="2026-01-01T00:00:00Z")
        for purpose in ("analytics", "personalization")
    ]
    assert (await client.post("/v1/consents", json=batch(*records), headers=admin)).status_code == 201
    check = {"subject": SUBJECT, "purpose": "analytics", "region": "DE"}
    assert (await client.post("/v1/decisions", json=check, headers=admin)).status_code == 200


async def code_for(conn, settings, request_id: str) -> str:
    """What the business's messaging system gets in `request.verification_requested` (sealed at rest)."""
    keys = crypto.load_keys(settings)
    rows = await conn.fetch(
        "SELECT event_id, data, sealed FROM outbox WHERE type = 'request.verification_requested' ORDER BY created_at"
    )
    for row in reversed(rows):
        assert row["sealed"]
        body = msgspec.json.decode(outbox.opened(keys, row["event_id"], row["data"], True))
        if body["request_id"] == request_id:
            return body["code"]
    raise AssertionError("no code was sent")
