"""What the decision tests send and read back: checks, records written first, the GPC records the service writes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from tests.consents.helpers import batch


def iso(delta_seconds: float = 0) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_seconds)).isoformat().replace("+00:00", "Z")


def check(email="ann@example.com", purpose="personalization", region="DE", **context):
    body = {
        "subject": {"identifiers": [{"type": "email", "value": email}]},
        "purpose": purpose,
        "region": region,
    }
    if context:
        body["context"] = context
    return body


async def write(client, headers, *records):
    response = await client.post("/v1/consents", json=batch(*records), headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["records"]


async def decide(client, headers, body):
    response = await client.post("/v1/decisions", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def gpc_records(client, headers, subject_id, want, timeout=5.0):
    """The subject's GPC-sourced records, once there are `want` of them (they are written after the answer)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        history = (await client.get(f"/v1/subjects/{subject_id}/consents", headers=headers)).json()["records"]
        found = [r for r in history if r["source"]["method"] == "gpc_signal"]
        if len(found) >= want or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)
