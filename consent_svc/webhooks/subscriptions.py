"""SQL of outbound subscriptions, their secrets and deliveries; functions run it on a connection the caller holds."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import crypto, ids, signing
from consent_svc.webhooks.types import (
    Deliveries,
    Delivery,
    Subscription,
    SubscriptionFilter,
    SubscriptionIn,
    SubscriptionUpdate,
)

# Past the retention period an event goes with its finished deliveries (replay reaches back that far), unless
# something still waits for it: a pending delivery, or the dispatcher, not there yet.
DELETE_OLD_DELIVERIES = """
DELETE FROM webhook_deliveries
WHERE status <> 'pending' AND coalesce(delivered_at, last_attempt_at) < now() - make_interval(days => $1)
"""
DELETE_OLD_EVENTS = """
DELETE FROM outbox o
WHERE o.created_at < now() - make_interval(days => $1)
  AND (o.txid, o.event_id) <= (SELECT txid, event_id FROM outbox_cursor)
  AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE (d.txid, d.event_id) = (o.txid, o.event_id))
"""
INSERT_SUBSCRIPTION = "INSERT INTO webhook_subscriptions (id, url, events, purposes) VALUES ($1, $2, $3, $4)"
INSERT_SECRET = """
INSERT INTO webhook_subscription_secrets (subscription_id, secret_id, wrapped) VALUES ($1, $2, $3)
"""
RETIRE_SECRETS = """
UPDATE webhook_subscription_secrets SET retires_at = now() + make_interval(hours => $2)
WHERE subscription_id = $1 AND (retires_at IS NULL OR retires_at > now() + make_interval(hours => $2))
RETURNING retires_at
"""
SELECT_SUBSCRIPTIONS = """
SELECT s.id, s.url, s.events, s.purposes, s.paused_at, s.created_at, s.updated_at,
       (SELECT count(*) FROM webhook_deliveries d
        WHERE d.subscription_id = s.id AND d.status = 'pending') AS pending,
       (SELECT count(*) FROM webhook_deliveries d
        WHERE d.subscription_id = s.id AND d.status = 'dead') AS dead
FROM webhook_subscriptions s
WHERE s.deleted_at IS NULL AND ($1::uuid IS NULL OR s.id = $1)
ORDER BY s.created_at, s.id
"""
UPDATE_SUBSCRIPTION = """
UPDATE webhook_subscriptions
SET url = coalesce($2, url), events = coalesce($3, events),
    purposes = CASE WHEN $4 THEN $5 ELSE purposes END, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id
"""
PAUSE = """
UPDATE webhook_subscriptions SET paused_at = CASE WHEN $2 THEN coalesce(paused_at, now()) END, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id
"""
# Resumed: what waited gets its whole retry window from now, not from before the pause.
REQUEUE_PENDING = (
    "UPDATE webhook_deliveries SET queued_at = now() WHERE subscription_id = $1 AND status = 'pending'"
)
DELETE_SUBSCRIPTION = """
UPDATE webhook_subscriptions SET deleted_at = now(), updated_at = now() WHERE id = $1 AND deleted_at IS NULL
RETURNING id
"""
# A deleted subscription sends nothing more: what was waiting goes (what was delivered or dead stays, as
# history), and so do its secrets.
DROP_PENDING = "DELETE FROM webhook_deliveries WHERE subscription_id = $1 AND status = 'pending'"
DROP_SECRETS = "DELETE FROM webhook_subscription_secrets WHERE subscription_id = $1"
# What the delivery worker needs of every live subscription: where, what, and the secrets that sign now.
SELECT_TARGETS = """
SELECT s.id, s.url, s.paused_at IS NOT NULL AS paused, k.secret_id, k.wrapped
FROM webhook_subscriptions s
LEFT JOIN webhook_subscription_secrets k
  ON k.subscription_id = s.id AND (k.retires_at IS NULL OR k.retires_at > now())
WHERE s.deleted_at IS NULL
ORDER BY s.id, k.created_at
"""
SELECT_INTERESTS = "SELECT id, events, purposes FROM webhook_subscriptions WHERE deleted_at IS NULL"
SELECT_DELIVERIES = """
SELECT d.seq, d.event_id, o.type, o.created_at, d.status, d.attempts,
       CASE WHEN d.status = 'pending' THEN d.next_attempt_at END AS next_attempt_at,
       d.last_attempt_at, d.last_status, d.last_error, d.delivered_at
FROM webhook_deliveries d
JOIN outbox o ON (o.txid, o.event_id) = (d.txid, d.event_id)
WHERE d.subscription_id = $1 AND ($2::text IS NULL OR d.status = $2) AND ($3::bigint IS NULL OR d.seq < $3)
ORDER BY d.seq DESC
LIMIT $4
"""
REPLAY_ONE = """
UPDATE webhook_deliveries
SET status = 'pending', attempts = 0, next_attempt_at = now(), queued_at = now(), first_attempt_at = NULL,
    delivered_at = NULL
WHERE subscription_id = $1 AND seq = $2
RETURNING seq
"""
REPLAY_RANGE = """
UPDATE webhook_deliveries d
SET status = 'pending', attempts = 0, next_attempt_at = now(), queued_at = now(), first_attempt_at = NULL,
    delivered_at = NULL
FROM outbox o
WHERE d.subscription_id = $1 AND (o.txid, o.event_id) = (d.txid, d.event_id)
  AND o.created_at >= $2 AND o.created_at < $3
"""


class Target(NamedTuple):
    """A live subscription as its sender sees it."""

    id: UUID
    url: str
    paused: bool
    keys: tuple[bytes, ...]


class Interest(NamedTuple):
    """What a live subscription wants, as the dispatcher sees it."""

    id: UUID
    events: tuple[str, ...]
    purposes: frozenset[str] | None

    def wants(self, event_type: str, purpose: str | None) -> bool:
        family = event_type.split(".", 1)[0] + ".*"
        if event_type not in self.events and family not in self.events:
            return False
        return purpose is None or self.purposes is None or purpose in self.purposes


def _aad(subscription_id: UUID, secret_id: UUID) -> bytes:
    return b"webhook subscription secret\0" + subscription_id.bytes + secret_id.bytes


async def _add_secret(conn: asyncpg.Connection, keys: crypto.Keys, subscription_id: UUID) -> str:
    secret = signing.new_secret()
    secret_id = ids.uuid4s(1)[0]
    wrapped = keys.wrap(signing.secret_key(secret), _aad(subscription_id, secret_id))
    await conn.execute(INSERT_SECRET, subscription_id, secret_id, wrapped)
    return secret


def _subscription(row: asyncpg.Record) -> Subscription:
    return Subscription(
        id=row["id"],
        url=row["url"],
        events=row["events"],
        filter=SubscriptionFilter(purposes=row["purposes"]) if row["purposes"] is not None else None,
        status="paused" if row["paused_at"] is not None else "active",
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        pending=row["pending"],
        dead=row["dead"],
    )


async def create(conn: asyncpg.Connection, keys: crypto.Keys, new: SubscriptionIn) -> tuple[UUID, str]:
    subscription_id = ids.uuid7s(1)[0]
    purposes = new.filter.purposes if new.filter else None
    await conn.execute(INSERT_SUBSCRIPTION, subscription_id, new.url, new.events, purposes)
    return subscription_id, await _add_secret(conn, keys, subscription_id)


async def listed(conn: asyncpg.Connection, subscription_id: UUID | None = None) -> list[Subscription]:
    return [_subscription(row) for row in await conn.fetch(SELECT_SUBSCRIPTIONS, subscription_id)]


async def get(conn: asyncpg.Connection, subscription_id: UUID) -> Subscription | None:
    found = await listed(conn, subscription_id)
    return found[0] if found else None


async def update(conn: asyncpg.Connection, subscription_id: UUID, change: SubscriptionUpdate) -> bool:
    url = None if change.url is msgspec.UNSET else change.url
    events = None if change.events is msgspec.UNSET else change.events
    filter_given = change.filter is not msgspec.UNSET
    purposes = change.filter.purposes if isinstance(change.filter, SubscriptionFilter) else None
    row = await conn.fetchval(UPDATE_SUBSCRIPTION, subscription_id, url, events, filter_given, purposes)
    return row is not None


async def pause(conn: asyncpg.Connection, subscription_id: UUID, paused: bool) -> bool:
    if await conn.fetchval(PAUSE, subscription_id, paused) is None:
        return False
    if not paused:
        await conn.execute(REQUEUE_PENDING, subscription_id)
    return True


async def delete(conn: asyncpg.Connection, subscription_id: UUID) -> bool:
    if await conn.fetchval(DELETE_SUBSCRIPTION, subscription_id) is None:
        return False
    await conn.execute(DROP_PENDING, subscription_id)
    await conn.execute(DROP_SECRETS, subscription_id)
    return True


async def rotate(
    conn: asyncpg.Connection, keys: crypto.Keys, subscription_id: UUID, grace_hours: int
) -> tuple[str, datetime | None]:
    retiring = [row[0] for row in await conn.fetch(RETIRE_SECRETS, subscription_id, grace_hours)]
    return await _add_secret(conn, keys, subscription_id), max(retiring, default=None)


SELECT_DELIVERIES_ABOUT = """
SELECT o.event_id, o.type, o.created_at, w.url, d.status, d.attempts, d.delivered_at, d.last_attempt_at
FROM outbox o
JOIN webhook_deliveries d ON (d.txid, d.event_id) = (o.txid, o.event_id)
JOIN webhook_subscriptions w ON w.id = d.subscription_id
WHERE o.subject_id = $1
ORDER BY o.created_at, o.event_id, w.id
"""


async def deliveries_about(conn: asyncpg.Connection, subject_id: UUID) -> list[dict]:
    """Deliveries of events that named a subject (within the retention period): for its access request."""
    return [
        {
            "event_id": row["event_id"],
            "event": row["type"],
            "created_at": row["created_at"],
            "recipient": urlsplit(row["url"]).hostname,
            "status": row["status"],
            "attempts": row["attempts"],
            "delivered_at": row["delivered_at"],
            "last_attempt_at": row["last_attempt_at"],
        }
        for row in await conn.fetch(SELECT_DELIVERIES_ABOUT, subject_id)
    ]


async def targets(conn: asyncpg.Connection, keys: crypto.Keys) -> dict[UUID, Target]:
    rows = await conn.fetch(SELECT_TARGETS)
    signing_keys: dict[UUID, list[bytes]] = {}
    for row in rows:
        held = signing_keys.setdefault(row["id"], [])
        if row["secret_id"] is not None:
            held.append(keys.unwrap(row["wrapped"], _aad(row["id"], row["secret_id"])))
    return {
        row["id"]: Target(row["id"], row["url"], row["paused"], tuple(signing_keys[row["id"]]))
        for row in rows
    }


async def interests(conn: asyncpg.Connection) -> list[Interest]:
    return [
        Interest(
            row["id"],
            tuple(row["events"]),
            frozenset(row["purposes"]) if row["purposes"] is not None else None,
        )
        for row in await conn.fetch(SELECT_INTERESTS)
    ]


async def deliveries(
    conn: asyncpg.Connection, subscription_id: UUID, status: str | None, before: int | None, limit: int
) -> Deliveries:
    rows = await conn.fetch(SELECT_DELIVERIES, subscription_id, status, before, limit + 1)
    out = [
        Delivery(webhook_id=row["event_id"], **{k: v for k, v in row.items() if k != "event_id"})
        for row in rows
    ]
    next_cursor = str(out[limit - 1].seq) if len(out) > limit else None
    return Deliveries(deliveries=out[:limit], next_cursor=next_cursor)


async def replay_one(conn: asyncpg.Connection, subscription_id: UUID, seq: int) -> bool:
    return await conn.fetchval(REPLAY_ONE, subscription_id, seq) is not None


async def replay_range(
    conn: asyncpg.Connection, subscription_id: UUID, since: datetime, until: datetime
) -> int:
    status = await conn.execute(REPLAY_RANGE, subscription_id, since, until)
    return int(status.split()[-1])


async def delete_expired(conn: asyncpg.Connection, retention_days: int) -> None:
    """Sent or dead deliveries past the retention period, then the events nothing waits for any more."""
    await conn.execute(DELETE_OLD_DELIVERIES, retention_days)
    await conn.execute(DELETE_OLD_EVENTS, retention_days)
