"""What the CMP sync tests send: signed messages made with the reference library, and the events they carry."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

from standardwebhooks.webhooks import Webhook


def signed(
    secret: str, body: dict | bytes, msg_id: str | None = None, at: float | None = None
) -> tuple[bytes, dict]:
    """What a CMP sends: the body and its Standard Webhooks headers, made with the reference library."""
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    when = datetime.fromtimestamp(at if at is not None else time.time(), UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, when, payload.decode()),
        "content-type": "application/json",
    }
    return payload, headers


def records_event(*records: dict) -> dict:
    return {"type": "consent.records", "data": {"records": list(records)}}


async def post(client, source: str, secret: str, body, **kw):
    payload, headers = signed(secret, body, **kw)
    return await client.post(f"/v1/inbound/{source}", content=payload, headers=headers)


TCF = {
    v["id"]: v
    for v in json.loads((Path(__file__).parent.parent / "vectors" / "tcf.json").read_text())["vectors"]
}


def tcf_event(tc_string: str, email: str = "t@example.com", **extra) -> dict:
    data = {
        "subject": {"identifiers": [{"type": "email", "value": email}]},
        "tc_string": tc_string,
        "region": "FR",
    }
    return {"type": "tcf.string", "data": {**data, **extra}}


GPP = {
    v["id"]: v
    for v in json.loads((Path(__file__).parent.parent / "vectors" / "gpp.json").read_text())["vectors"]
}


def gpp_event(gpp_string: str, email: str = "g@example.com", **extra) -> dict:
    data = {"subject": {"identifiers": [{"type": "email", "value": email}]}, "gpp_string": gpp_string}
    return {"type": "gpp.string", "data": {**data, **extra}}


async def statuses_of(client, admin, response) -> dict[str, str]:
    assert response.status_code == 202, response.text
    subject = response.json()["records"][0]["subject_id"]
    history = (await client.get(f"/v1/subjects/{subject}/consents", headers=admin)).json()["records"]
    assert {r["proof"]["gpp_string"] for r in history} == {
        json.loads(response.request.content)["data"]["gpp_string"]
    }
    return {r["purpose"]: r["status"] for r in history}


def didomi_event(purposes: list[dict], kind: str = "event.created", **user) -> dict:
    entity = {
        "id": "evt_1",
        "created_at": "2026-11-20T10:00:00Z",
        "organization_id": "acme",
        "user": {"id": "didomi-user-1", "organization_user_id": "cust-42", **user},
        "consents": {"purposes": purposes, "vendors": {"enabled": [], "disabled": []}},
    }
    parameters = (
        {"new_entity": entity, "old_entity": entity} if kind == "event.updated" else {"entity": entity}
    )
    return {"type": kind, "parameters": parameters}
