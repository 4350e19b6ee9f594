"""Downstream systems: where requests are fanned out to, and who confirms they were carried out.

A system is an outbound subscription (its URL and signing secret, sent only the events addressed to it) and an
API key of its own, with the single scope `requests:confirm`.
"""

from __future__ import annotations

from typing import NamedTuple
from uuid import UUID

import asyncpg

from consent_svc import auth, crypto, ids
from consent_svc.requests.types import System, SystemCreated, SystemIn
from consent_svc.webhooks import subscriptions
from consent_svc.webhooks.types import SubscriptionIn

INSERT_SYSTEM = """
INSERT INTO downstream_systems (system_id, name, subscription_id, api_key_id, request_types)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (name) DO NOTHING
RETURNING created_at
"""
SELECT_SYSTEMS = """
SELECT s.system_id, s.name, w.url, s.request_types, s.subscription_id, s.api_key_id, s.created_at
FROM downstream_systems s JOIN webhook_subscriptions w ON w.id = s.subscription_id
ORDER BY s.name
"""
SELECT_HANDLING = """
SELECT s.system_id, s.name, s.subscription_id
FROM downstream_systems s JOIN webhook_subscriptions w ON w.id = s.subscription_id
WHERE $1 = ANY(s.request_types) AND w.deleted_at IS NULL
ORDER BY s.name
"""
SELECT_BY_KEY = "SELECT system_id FROM downstream_systems WHERE api_key_id = $1"


class Handler(NamedTuple):
    system_id: UUID
    name: str
    subscription_id: UUID


def event_names(request_types: list[str]) -> list[str]:
    return [f"request.{t}_requested" for t in sorted(set(request_types))]


async def create(conn: asyncpg.Connection, keys: crypto.Keys, new: SystemIn) -> SystemCreated | None:
    """None if a system of that name exists (nothing is made)."""
    subscription_id, secret = await subscriptions.create(
        conn, keys, SubscriptionIn(url=new.url, events=event_names(new.request_types))
    )
    key = await auth.create_key(conn, f"system {new.name}", ["requests:confirm"])
    system_id = ids.uuid7s(1)[0]
    types = sorted(set(new.request_types))
    if await conn.fetchval(INSERT_SYSTEM, system_id, new.name, subscription_id, key.id, types) is None:
        return None
    return SystemCreated(
        id=system_id,
        name=new.name,
        url=new.url,
        request_types=types,
        subscription_id=subscription_id,
        secret=secret,
        key=key.key,
    )


async def listed(conn: asyncpg.Connection) -> list[System]:
    return [
        System(
            id=row["system_id"],
            name=row["name"],
            url=row["url"],
            request_types=row["request_types"],
            subscription_id=row["subscription_id"],
            api_key_id=row["api_key_id"],
            created_at=row["created_at"],
        )
        for row in await conn.fetch(SELECT_SYSTEMS)
    ]


async def handling(conn: asyncpg.Connection, request_type: str) -> list[Handler]:
    return [Handler(*row) for row in await conn.fetch(SELECT_HANDLING, request_type)]


async def by_key(conn: asyncpg.Connection, api_key_id: str) -> UUID | None:
    return await conn.fetchval(SELECT_BY_KEY, api_key_id)
