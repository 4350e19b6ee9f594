"""A CMP played end to end: signed events in (generic, TCF, GPP, Didomi), a forged one refused, a retried one
not stored twice, an out-of-order one not winning; a subscriber gets the resulting `consent.changed` events,
each verified with the standardwebhooks package, one per change of a subject's current consent."""

from __future__ import annotations

import asyncio
from collections import Counter

import msgspec
import pytest
from standardwebhooks.webhooks import Webhook

from tests.cmp.helpers import (
    GPP,
    TCF,
    didomi_event,
    gpp_event,
    post,
    records_event,
    signed,
    tcf_event,
)
from tests.consents.helpers import record
from tests.receiver import Receiver


@pytest.fixture
def settings(settings):
    return msgspec.structs.replace(settings, webhook_allow_private_networks=True, mode="local")


async def test_a_cmp_end_to_end(client, keys):
    manager = await keys.of("webhooks:manage")
    receiver = Receiver()
    try:
        sub = await client.post(
            "/v1/webhooks/subscriptions",
            json={"url": receiver.url, "events": ["consent.changed"]},
            headers=manager,
        )
        assert sub.status_code == 201
        secret_out = sub.json()["secret"]
        sources = {}
        for name, kind, region in (
            ("web", "generic", "FR"),
            ("us-web", "generic", "US-CA"),
            ("didomi", "didomi", "FR"),
        ):
            made = await client.post(
                "/v1/sources", json={"name": name, "kind": kind, "default_region": region}, headers=manager
            )
            sources[name] = made.json()["secret"]

        generic = records_event(
            record("ann@example.com", "analytics", "granted", at="2026-11-20T10:00:00Z", region="FR")
        )
        first = await post(client, "web", sources["web"], generic, msg_id="msg_generic")
        assert first.status_code == 202
        # The CMP retries the same message: answered again, stored once, announced once.
        again = await post(client, "web", sources["web"], generic, msg_id="msg_generic")
        assert again.status_code == 202 and again.headers.get("idempotent-replayed") == "true"
        # Forged: signed with another secret. Refused, nothing stored, nothing announced.
        forged_body = records_event(
            record("ann@example.com", "analytics", "withdrawn", at="2026-11-22T10:00:00Z", region="FR")
        )
        payload, headers = signed("whsec_" + "Zm9yZ2VkLXNlY3JldC1mb3JnZWQtc2VjcmV0", forged_body)
        assert (await client.post("/v1/inbound/web", content=payload, headers=headers)).status_code == 401
        # Out of order: a withdrawal collected before the grant arrives after it. History only, no change.
        older = records_event(
            record("ann@example.com", "analytics", "withdrawn", at="2026-11-19T10:00:00Z", region="FR")
        )
        assert (await post(client, "web", sources["web"], older)).status_code == 202

        tcf = await post(
            client, "web", sources["web"], tcf_event(TCF["tcf-005"]["tc_string"], email="tia@example.com")
        )
        gpp = await post(
            client,
            "us-web",
            sources["us-web"],
            gpp_event(GPP["gpp-013"]["gpp_string"], email="gus@example.com"),
        )
        didomi = await post(
            client, "didomi", sources["didomi"], didomi_event([{"id": "cookies", "enabled": True}])
        )
        for response in (tcf, gpp, didomi):
            assert response.status_code == 202, response.text
        # Every record of these three is a first choice for its subject and purpose: each one a change.
        expected = 1 + sum(len(response.json()["records"]) for response in (tcf, gpp, didomi))

        events = await receiver.wait_for(expected)
        await asyncio.sleep(0.5)  # nothing more arrives: no duplicate, no forged, no out-of-order change
        assert len(receiver.received) == expected
        for (headers, body), event in zip(receiver.received, events, strict=True):
            assert Webhook(secret_out).verify(body, headers) == event
        ann = first.json()["records"][0]["subject_id"]
        assert [
            (e["data"]["purpose"], e["data"]["status"]) for e in events if e["data"]["subject_id"] == ann
        ] == [("analytics", "granted")]
        by_subject = Counter(e["data"]["subject_id"] for e in events)
        assert by_subject[tcf.json()["records"][0]["subject_id"]] == len(tcf.json()["records"])
        assert {e["data"]["source"].get("cmp") for e in events} >= {"didomi"}
        sequences = [e["sequence"] for e in events]
        assert sequences == sorted(sequences) and len(set(sequences)) == len(sequences)
    finally:
        receiver.close()
