"""Outbound webhooks: consent changes reach subscribers signed, in order, retried, and never anywhere unsafe."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from tests.consents.helpers import batch, record
from tests.receiver import Receiver
from tests.webhooks.helpers import settle, subscribe, write


@pytest.fixture
def settings(settings):
    # Receivers here listen on 127.0.0.1; retries are fast so a test sees several.
    return msgspec.structs.replace(
        settings, webhook_allow_private_networks=True, webhook_retry_base_seconds=0.05, mode="local"
    )


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
    with pytest.raises(WebhookVerificationError):
        verified("whsec_" + "QUJD" * 8, headers, body)


async def test_a_receiver_failing_five_times_then_recovering_gets_everything_in_order(
    client, manager, writer
):
    receiver = Receiver(answers=lambda n: 503 if n < 5 else 200)
    try:
        sub = await subscribe(client, manager, receiver.url)
        for n, status in enumerate(["granted", "withdrawn", "granted", "denied"]):
            await write(
                client, writer, record("bob@example.com", "analytics", status, at=f"2026-11-20T10:0{n}:00Z")
            )
        got = await receiver.wait_for(4)
        assert [e["data"]["status"] for e in got] == ["granted", "withdrawn", "granted", "denied"]
        sequences = [e["sequence"] for e in got]
        assert sequences == sorted(sequences) and len(set(sequences)) == 4
        # The first event was tried six times, with the same webhook-id each time; nothing overtook it.
        first_id = receiver.received[0][0]["webhook-id"]
        assert [h["webhook-id"] for h, _ in receiver.received[:6]] == [first_id] * 6
        by_seq = await settle(client, manager, sub)  # successes are marked in batches, just after
        assert [d["status"] for d in by_seq] == ["delivered"] * 4
        assert by_seq[0]["attempts"] == 6 and by_seq[1]["attempts"] == 1
        assert by_seq[0]["webhook_id"] == first_id
    finally:
        receiver.close()


async def test_only_changes_of_the_current_state_are_announced(client, manager, writer, receiver):
    await subscribe(client, manager, receiver.url)
    await write(client, writer, record("cy@example.com", "analytics", "granted", at="2026-11-20T10:00:00Z"))
    # Older than the current state: kept in the history, changes nothing, announces nothing.
    await write(client, writer, record("cy@example.com", "analytics", "withdrawn", at="2026-11-19T10:00:00Z"))
    # Resent: the stored record is the answer; nothing new.
    await write(client, writer, record("cy@example.com", "analytics", "granted", at="2026-11-20T10:00:00Z"))
    await write(client, writer, record("cy@example.com", "analytics", "withdrawn", at="2026-11-21T10:00:00Z"))
    got = await receiver.wait_for(2)
    await asyncio.sleep(0.5)
    assert [e["data"]["status"] for e in receiver.events()] == ["granted", "withdrawn"]
    assert got[1]["data"]["collected_at"] == "2026-11-21T10:00:00Z"


async def test_a_refused_batch_announces_nothing(client, manager, writer, conn):
    good, bad = record("dee@example.com"), record("eve@example.com", purpose="no-such-purpose")
    response = await client.post("/v1/consents", json=batch(good, bad), headers=writer)
    assert response.status_code == 422
    assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    await write(client, writer, good, record("eve@example.com"))
    assert await conn.fetchval("SELECT count(*) FROM outbox WHERE type = 'consent.changed'") == 2


async def test_filters_pick_events_and_purposes(client, manager, writer):
    marketing, requests_only = Receiver(), Receiver()
    try:
        await subscribe(client, manager, marketing.url, filter={"purposes": ["email_marketing"]})
        await subscribe(client, manager, requests_only.url, events=["request.*"])
        await write(
            client,
            writer,
            record("fay@example.com", "analytics"),
            record("fay@example.com", "email_marketing"),
        )
        [event] = await marketing.wait_for(1)
        assert event["data"]["purpose"] == "email_marketing"
        await asyncio.sleep(0.5)
        assert len(marketing.received) == 1 and requests_only.received == []
    finally:
        marketing.close()
        requests_only.close()


async def test_a_client_error_is_final_and_the_queue_moves_on(client, manager, writer):
    receiver = Receiver(answers=lambda n: 400 if n == 0 else 200)
    try:
        sub = await subscribe(client, manager, receiver.url)
        await write(client, writer, record("gus@example.com", "analytics"))
        await write(client, writer, record("hal@example.com", "analytics"))
        got = await settle(client, manager, sub, lambda ds: len(ds) == 2 and ds[1]["status"] == "delivered")
        assert got[0]["status"] == "dead" and got[0]["attempts"] == 1
        assert got[0]["last_status"] == 400 and got[0]["last_error"] == "HTTP 400"
        assert len(receiver.received) == 2
    finally:
        receiver.close()


async def test_after_the_retry_window_a_delivery_is_dead_lettered_audited_and_replayable(
    client, manager, writer, settings, admin
):
    answers = {"status": 500}
    receiver = Receiver(answers=lambda n: answers["status"])
    try:
        sub = await subscribe(client, manager, receiver.url)
        before = datetime.now(UTC) - timedelta(seconds=1)
        written = await write(client, writer, record("ida@example.com", "analytics"))
        # The window is a setting (24 h by default); here it is shortened by moving the queueing time back.
        got = await settle(client, manager, sub, lambda ds: ds and ds[0]["attempts"] >= 2)
        assert got[0]["status"] == "pending" and got[0]["last_error"] == "HTTP 500"
        await _age_queue(sub, settings, timedelta(hours=25))
        got = await settle(client, manager, sub)
        assert got[0]["status"] == "dead"
        entries = (
            await client.get("/v1/audit", params={"action": "webhook.dead_lettered"}, headers=admin)
        ).json()
        [entry] = entries["entries"]
        assert entry["outcome"] == "dead" and entry["payload"]["subscription_id"] == sub["id"]
        assert entry["subject_id"] == written["records"][0]["subject_id"]
        listed = (await client.get(f"/v1/webhooks/subscriptions/{sub['id']}", headers=manager)).json()
        assert (listed["dead"], listed["pending"]) == (1, 0)

        answers["status"] = 200
        response = await client.post(
            f"/v1/webhooks/subscriptions/{sub['id']}/replay",
            json={"since": before.isoformat(), "until": datetime.now(UTC).isoformat()},
            headers=manager,
        )
        assert response.status_code == 202 and response.json() == {"replayed": 1}
        got = await settle(client, manager, sub)
        assert got[0]["status"] == "delivered" and got[0]["attempts"] == 1
        assert len(receiver.events(200)) >= 1
    finally:
        receiver.close()


async def _age_queue(sub: dict, settings, by: timedelta) -> None:
    """As if the subscription's pending deliveries had been queued `by` earlier."""
    import asyncpg

    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "UPDATE webhook_deliveries SET queued_at = queued_at - $2::interval "
            "WHERE subscription_id = $1 AND status = 'pending'",
            sub["id"],
            by,
        )
    finally:
        await conn.close()


async def test_behind_a_receiver_down_for_the_whole_window_the_backlog_drains(
    client, manager, writer, settings
):
    """Each queued event does not get a window of its own in turn (one dead letter a day, a backlog without
    end): what waited longer than the window gets one more attempt, then is dead-lettered."""
    answers = {"status": 503}
    receiver = Receiver(answers=lambda n: answers["status"])
    try:
        sub = await subscribe(client, manager, receiver.url)
        for name in ("jan", "kim", "lou"):
            await write(client, writer, record(f"{name}@example.com", "analytics"))
        await settle(client, manager, sub, lambda ds: len(ds) == 3 and ds[0]["attempts"] >= 2)
        await _age_queue(sub, settings, timedelta(hours=25))
        got = await settle(client, manager, sub)
        assert [d["status"] for d in got] == ["dead"] * 3
        assert [d["attempts"] for d in got[1:]] == [1, 1]  # the two queued behind the head: one attempt each

        answers["status"] = 200
        await write(client, writer, record("max@example.com", "analytics"))
        got = await settle(client, manager, sub, lambda ds: len(ds) == 4 and ds[-1]["status"] == "delivered")
        assert got[-1]["attempts"] == 1
    finally:
        receiver.close()


async def test_resuming_gives_what_waited_in_the_pause_a_whole_window(client, manager, writer, settings):
    receiver = Receiver(answers=lambda n: 503)
    try:
        sub = await subscribe(client, manager, receiver.url)
        await client.post(f"/v1/webhooks/subscriptions/{sub['id']}/pause", headers=manager)
        await write(client, writer, record("ned@example.com", "analytics"))
        await settle(client, manager, sub, lambda ds: len(ds) == 1)
        await _age_queue(sub, settings, timedelta(hours=25))  # paused for longer than the window
        await client.post(f"/v1/webhooks/subscriptions/{sub['id']}/resume", headers=manager)
        got = await settle(client, manager, sub, lambda ds: ds and ds[0]["attempts"] >= 2)
        assert got[0]["status"] == "pending" and got[0]["last_error"] == "HTTP 503"
    finally:
        receiver.close()


async def test_a_subscription_made_elsewhere_gets_every_event_committed_after_it(
    client, writer, conn, settings
):
    """Made by another worker (here: straight in the database), it is not known to the leader until its next
    read of subscriptions; events committed in between still reach it."""
    from consent_svc import crypto
    from consent_svc.webhooks import subscriptions
    from consent_svc.webhooks.types import SubscriptionIn

    receiver = Receiver()
    try:
        async with conn.transaction():
            await subscriptions.create(
                conn, crypto.load_keys(settings), SubscriptionIn(url=receiver.url, events=["consent.changed"])
            )
        for n in range(5):
            await write(client, writer, record(f"new{n}@example.com", "analytics"))
        got = await receiver.wait_for(5)
        assert sorted(e["data"]["subject_id"] for e in got) == sorted({e["data"]["subject_id"] for e in got})
    finally:
        receiver.close()


async def test_a_redirect_is_not_followed(client, manager, writer):
    receiver = Receiver(answers=lambda n: 307)
    try:
        sub = await subscribe(client, manager, receiver.url)
        await write(client, writer, record("rex@example.com", "analytics"))
        [delivery] = await settle(client, manager, sub)
        assert delivery["status"] == "dead" and "redirects are not followed" in delivery["last_error"]
        assert len(receiver.received) == 1
    finally:
        receiver.close()


@pytest.fixture
def short_attempts(monkeypatch):
    from consent_svc.webhooks import delivery

    monkeypatch.setattr(delivery, "ATTEMPT_SECONDS", 0.3)


async def test_a_receiver_that_does_not_answer_in_time_is_retried(short_attempts, client, manager, writer):
    receiver = Receiver(delay=1.0)
    try:
        sub = await subscribe(client, manager, receiver.url)
        await write(client, writer, record("sam@example.com", "analytics"))
        got = await settle(client, manager, sub, lambda ds: ds and ds[0]["attempts"] >= 2)
        assert got[0]["status"] == "pending" and got[0]["last_error"] == "no answer within 0.3 s"
        assert got[0]["last_status"] is None
    finally:
        receiver.close()


async def test_sent_events_are_dropped_after_the_retention_period_and_waiting_ones_kept(
    client, manager, writer, conn, settings
):
    from consent_svc.webhooks import subscriptions

    stuck = Receiver(answers=lambda n: 503)
    receiver = Receiver()
    try:
        sent = await subscribe(client, manager, receiver.url)
        waiting = await subscribe(client, manager, stuck.url)
        await write(client, writer, record("old@example.com", "analytics"))
        await settle(client, manager, sent)
        await settle(client, manager, waiting, lambda ds: ds and ds[0]["attempts"] >= 1)
        await conn.execute("UPDATE outbox SET created_at = created_at - interval '40 days'")
        await conn.execute(
            "UPDATE webhook_deliveries SET delivered_at = delivered_at - interval '40 days', "
            "last_attempt_at = last_attempt_at - interval '40 days'"
        )
        await subscriptions.delete_expired(conn, settings.webhook_retention_days)
        # The delivered one is gone; the one still retrying keeps its event.
        assert await conn.fetchval("SELECT count(*) FROM webhook_deliveries") == 1
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 1
        await client.delete(f"/v1/webhooks/subscriptions/{waiting['id']}", headers=manager)
        await subscriptions.delete_expired(conn, settings.webhook_retention_days)
        assert await conn.fetchval("SELECT count(*) FROM outbox") == 0
    finally:
        stuck.close()
        receiver.close()


async def test_a_receiver_that_hangs_does_not_slow_consent_writes(short_attempts, client, manager, writer):
    receiver = Receiver(delay=5.0)
    try:
        await subscribe(client, manager, receiver.url)
        await write(client, writer, record("first@example.com", "analytics"))
        await receiver.wait_for(1, status=None)  # the sender is now stuck on it
        started = asyncio.get_running_loop().time()
        for n in range(10):
            await write(client, writer, record(f"quick{n}@example.com", "analytics"))
        assert asyncio.get_running_loop().time() - started < 3.0
    finally:
        receiver.close()
