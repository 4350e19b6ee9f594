"""SQL of CMP sources and their signing secrets, and functions that run it on a connection the caller holds."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple
from uuid import UUID

import asyncpg

from consent_svc import crypto, ids, signing
from consent_svc.cmp.types import CmpSource, SourceIn

INSERT_SOURCE = """
INSERT INTO sources (name, kind, default_region) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING
RETURNING name
"""
INSERT_SECRET = "INSERT INTO source_secrets (source, secret_id, wrapped) VALUES ($1, $2, $3)"
# Secrets in use retire after the grace period; one already retiring keeps its earlier time.
RETIRE_SECRETS = """
UPDATE source_secrets SET retires_at = now() + make_interval(hours => $2)
WHERE source = $1 AND (retires_at IS NULL OR retires_at > now() + make_interval(hours => $2))
RETURNING retires_at
"""
SELECT_SOURCES = """
SELECT s.name, s.kind, s.default_region, s.created_at, s.disabled_at,
       count(k.secret_id) FILTER (WHERE k.retires_at IS NULL OR k.retires_at > now()) AS secrets
FROM sources s
LEFT JOIN source_secrets k ON k.source = s.name
WHERE $1::text IS NULL OR s.name = $1
GROUP BY s.name
ORDER BY s.name
"""
DISABLE_SOURCE = (
    "UPDATE sources SET disabled_at = now() WHERE name = $1 AND disabled_at IS NULL RETURNING name"
)
SELECT_VERIFIERS = """
SELECT s.kind, s.default_region, s.disabled_at, k.secret_id, k.wrapped
FROM sources s
LEFT JOIN source_secrets k ON k.source = s.name AND (k.retires_at IS NULL OR k.retires_at > now())
WHERE s.name = $1
"""


class Verifiers(NamedTuple):
    """What checking a source's message needs: its HMAC keys in force, and whether it is disabled."""

    kind: str
    default_region: str | None
    disabled: bool
    keys: list[bytes]


def _aad(source: str, secret_id: UUID) -> bytes:
    return b"source secret\0" + source.encode() + b"\0" + secret_id.bytes


async def _add_secret(conn: asyncpg.Connection, keys: crypto.Keys, source: str) -> str:
    secret = signing.new_secret()
    secret_id = ids.uuid4s(1)[0]
    wrapped = keys.wrap(signing.secret_key(secret), _aad(source, secret_id))
    await conn.execute(INSERT_SECRET, source, secret_id, wrapped)
    return secret


async def create(conn: asyncpg.Connection, keys: crypto.Keys, new: SourceIn) -> str | None:
    """The new source's secret, or None if the name is taken."""
    if await conn.fetchval(INSERT_SOURCE, new.name, new.kind, new.default_region) is None:
        return None
    return await _add_secret(conn, keys, new.name)


async def rotate(
    conn: asyncpg.Connection, keys: crypto.Keys, source: str, grace_hours: int
) -> tuple[str, datetime | None] | None:
    """A new secret, and when the old ones stop verifying; None for an unknown source."""
    if not await listed(conn, source):
        return None
    retiring = [row[0] for row in await conn.fetch(RETIRE_SECRETS, source, grace_hours)]
    return await _add_secret(conn, keys, source), max(retiring, default=None)


async def listed(conn: asyncpg.Connection, name: str | None = None) -> list[CmpSource]:
    return [CmpSource(**dict(row)) for row in await conn.fetch(SELECT_SOURCES, name)]


async def disable(conn: asyncpg.Connection, name: str) -> bool:
    return await conn.fetchval(DISABLE_SOURCE, name) is not None


async def verifiers(conn: asyncpg.Connection, keys: crypto.Keys, source: str) -> Verifiers | None:
    rows = await conn.fetch(SELECT_VERIFIERS, source)
    if not rows:
        return None
    first = rows[0]
    return Verifiers(
        first["kind"],
        first["default_region"],
        first["disabled_at"] is not None,
        [keys.unwrap(r["wrapped"], _aad(source, r["secret_id"])) for r in rows if r["secret_id"] is not None],
    )
