"""What keeps the public side safe: one-time codes, one-time export links, and rate limits shared by workers.

Codes and link tokens are stored as keyed hashes only; a code expires and locks after a few wrong tries.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from enum import Enum
from typing import Literal
from uuid import UUID

import asyncpg

from consent_svc import crypto

CODE_DIGITS = 8
WINDOW = timedelta(hours=1)

INSERT_CODE = """
INSERT INTO request_codes (request_id, code_hash, expires_at) VALUES ($1, $2, $3)
ON CONFLICT (request_id) DO UPDATE SET code_hash = EXCLUDED.code_hash, expires_at = EXCLUDED.expires_at,
    attempts = 0, used_at = NULL
"""
SELECT_CODE = (
    "SELECT code_hash, expires_at, attempts, used_at FROM request_codes WHERE request_id = $1 FOR UPDATE"
)
COUNT_ATTEMPT = "UPDATE request_codes SET attempts = attempts + 1 WHERE request_id = $1 RETURNING attempts"
USE_CODE = "UPDATE request_codes SET used_at = now() WHERE request_id = $1"
INSERT_LINK = "INSERT INTO export_links (token_hash, request_id, expires_at) VALUES ($1, $2, $3)"
# One use: the row is claimed by the statement that reads it, so two concurrent downloads cannot both succeed.
USE_LINK = """
UPDATE export_links SET used_at = now()
WHERE token_hash = $1 AND used_at IS NULL AND expires_at > now()
RETURNING request_id
"""
SELECT_LINK = "SELECT request_id, used_at, expires_at FROM export_links WHERE token_hash = $1"
HIT = """
INSERT INTO rate_limits AS r (bucket, window_start, hits) VALUES ($1, $2, 1)
ON CONFLICT (bucket, window_start) DO UPDATE SET hits = r.hits + 1
RETURNING hits
"""
DELETE_OLD_WINDOWS = "DELETE FROM rate_limits WHERE window_start < $1"


class CodeCheck(Enum):
    OK = "ok"
    WRONG = "wrong"
    EXPIRED = "expired"
    LOCKED = "locked"
    NONE = "none"


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def _code_hash(keys: crypto.Keys, request_id: UUID, code: str) -> bytes:
    return crypto.keyed_digest(keys.derive("request code"), request_id.bytes + code.encode())


def _token_hash(keys: crypto.Keys, token: str) -> bytes:
    return crypto.keyed_digest(keys.derive("export link"), token.encode())


async def issue_code(
    conn: asyncpg.Connection, keys: crypto.Keys, request_id: UUID, expires_at: datetime
) -> str:
    code = new_code()
    await conn.execute(INSERT_CODE, request_id, _code_hash(keys, request_id, code), expires_at)
    return code


async def check_code(
    conn: asyncpg.Connection, keys: crypto.Keys, request_id: UUID, code: str, max_attempts: int, now: datetime
) -> tuple[CodeCheck, int]:
    """The outcome and the tries left. A wrong try counts even when the code has expired."""
    row = await conn.fetchrow(SELECT_CODE, request_id)
    if row is None or row["used_at"] is not None:
        return CodeCheck.NONE, 0
    if row["attempts"] >= max_attempts:
        return CodeCheck.LOCKED, 0
    if row["expires_at"] <= now:
        return CodeCheck.EXPIRED, 0
    if crypto.constant_time_equal(row["code_hash"], _code_hash(keys, request_id, code.strip())):
        await conn.execute(USE_CODE, request_id)
        return CodeCheck.OK, max_attempts - row["attempts"]
    attempts = await conn.fetchval(COUNT_ATTEMPT, request_id)
    left = max_attempts - attempts
    return (CodeCheck.WRONG if left > 0 else CodeCheck.LOCKED), left


async def issue_link(
    conn: asyncpg.Connection, keys: crypto.Keys, request_id: UUID, expires_at: datetime
) -> str:
    token = secrets.token_urlsafe(32)
    await conn.execute(INSERT_LINK, _token_hash(keys, token), request_id, expires_at)
    return token


async def use_link(conn: asyncpg.Connection, keys: crypto.Keys, token: str) -> UUID | None:
    """The request of a valid link, which is now used up; None for an unknown, used or expired link."""
    return await conn.fetchval(USE_LINK, _token_hash(keys, token))


async def link_state(
    conn: asyncpg.Connection, keys: crypto.Keys, token: str, request_id: UUID, now: datetime
) -> Literal["ready", "used", "expired"] | None:
    """What became of a link to this request; None for a token that is not one."""
    row = await conn.fetchrow(SELECT_LINK, _token_hash(keys, token))
    if row is None or row["request_id"] != request_id:
        return None
    if row["used_at"] is not None:
        return "used"
    return "ready" if row["expires_at"] > now else "expired"


async def hit(conn: asyncpg.Connection, keys: crypto.Keys, bucket: bytes, now: datetime) -> int:
    """Counts one hit in the bucket's current one-hour window; the count so far."""
    window = now.replace(minute=0, second=0, microsecond=0)
    return await conn.fetchval(HIT, crypto.keyed_digest(keys.derive("rate limit"), bucket), window)


async def delete_old_windows(conn: asyncpg.Connection, now: datetime) -> None:
    await conn.execute(DELETE_OLD_WINDOWS, now - WINDOW)
