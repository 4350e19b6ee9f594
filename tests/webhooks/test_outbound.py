"""Outbound webhooks: consent changes reach subscribers signed, in order, retried, and never anywhere unsafe."""

from __future__ import annotations

import asyncio
import json

import msgspec
import pytest
from standardwebhooks.webhooks import Webhook

from tests.consents.helpers import batch, record
from tests.webhooks.receiver import Receiver


@pytest.fixture
def settings(settings):
    # Receivers here listen on 127.0.0.1; retries are fast so a test sees several.
    return msgspec.structs.replace(
        settings, webhook_allow_private_networks=True, webhook_retry_base_seconds=0.05, mode="local"
    )


@pytest.fixture
async def manager(keys):
    return await keys.of("webhooks:manage")


@pytest.fixture
async def writer(keys):
    return await keys.of("consents:write")


@pytest.fixture
def receiver():
    made = Receiver()
    yield made
    made.close()


async def subscribe(client, manager, url: str, **extra) -> dict:
    response = await client.post(
        "/v1/webhooks/subscriptions", json={"url": url, "events": ["consent.changed"], **extra}, headers=manager
    )
    assert response.status_code == 201, response.text
    return response.json()


async def write(client, writer, *records) -> dict:
    response = await client.post("/v1/consents", json=batch(*records), headers=writer)
    assert response.status_code == 201, response.text
    return response.json()


def verified(secret: str, headers: dict, body: bytes) -> dict:
    """What a receiver does with the reference library: raises unless the signature is the subscription's."""
    return Webhook(secret).verify(body, headers)


async def test_a_consent_change_is_delivered_signed_and_verifies(client, manager, writer, receiver):
    sub = await subscribe(client, manager, receiver.url)
    assert sub["secret"].startswith("whsec_") and sub["status"] == "active"
    written = await write(client, writer, record("ann@example.com", purpose="analytics", status="granted"))
    [event] = await receiver.wait_for(1)
    headers, body = receiver.received[0]
    assert verified(sub["secret"], headers, body) == event
    assert event["type"] == "consent.changed"
    data = event["data"]
    assert data["subject_id"] == written["records"][0]["subject_id"]
    assert data["record_id"] == written["records"][0]["id"]
    assert (data["purpose"], data["status"], data["region"]) == ("analytics", "granted", "US-CA")
    assert data["source"]["system"] == "shop-web"
    assert "ann@example.com" not in body.decode()  # subjects are named by their pseudonymous id only
    with pytest.raises(Exception):
        verified("whsec_" + "QUJD" * 8, headers, body)


async def test_a_receiver_failing_five_times_then_recovering_gets_everything_in_order(client, manager, writer):
    receiver = Receiver(answers=lambda n: 503 if n < 5 else 200)
    try:
        sub = await subscribe(client, manager, receiver.url)
        for n, status in enumerate(["granted", "withdrawn", "granted", "denied"]):
            await write(client, writer, record("bob@example.com", "analytics", status, at=f"2026-11-20T10:0{n}:00Z"))
        got = await receiver.wait_for(4)
        assert [e["data"]["status"] for e in got] == ["granted", "withdrawn", "granted", "denied"]
        sequences = [e["sequence"] for e in got]
        assert sequences == sorted(sequences) and len(set(sequences)) == 4
        # The first event was tried six times, with the same webhook-id each time; nothing overtook it.
        first_id = receiver.received[0][0]["webhook-id"]
        assert [h["webhook-id"] for h, _ in receiver.received[:6]] == [first_id] * 6
        listing = (await client.get(f"/v1/webhooks/subscriptions/{sub['id']}/deliveries", headers=manager)).json()
        by_seq = sorted(listing["deliveries"], key=lambda d: d["seq"])
        assert [d["status"] for d in by_seq] == ["delivered"] * 4
        assert by_seq[0]["attempts"] == 6 and by_seq[1]["attempts"] == 1
        assert by_seq[0]["webhook_id"] == first_id
    finally:
        receiver.close()
