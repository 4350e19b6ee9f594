"""Idempotency-Key: a retried call gets the first answer; the same key with another body is refused."""

from __future__ import annotations

import hashlib
import hmac

import asyncpg
import msgspec

from consent_svc.errors import InvalidInput, ProblemError

# A key older than the retention period is free again: the claim takes it over.
CLAIM_KEY = """
INSERT INTO idempotency_keys AS held (api_key_id, key_hash, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (api_key_id, key_hash) DO UPDATE
SET request_hash = EXCLUDED.request_hash, created_at = now(), status_code = NULL, response = NULL
WHERE held.created_at < now() - make_interval(hours => $4)
"""
SELECT_KEY = """
SELECT request_hash, status_code, response FROM idempotency_keys WHERE api_key_id = $1 AND key_hash = $2
"""
STORE_RESPONSE = """
UPDATE idempotency_keys SET status_code = $3, response = $4 WHERE api_key_id = $1 AND key_hash = $2
"""
DELETE_EXPIRED = "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(hours => $1)"


class Claim(msgspec.Struct, frozen=True):
    api_key_id: str
    key_hash: bytes
    request_hash: bytes
    ttl_hours: int
    kind: str = "Idempotency-Key"  # what the caller calls its key, for the error: a CMP sends a webhook-id


class Replay(msgspec.Struct, frozen=True):
    status_code: int
    body: bytes


def claim_for(
    api_key_id: str, header: str | None, request: msgspec.Struct, digest_key: bytes, ttl_hours: int
) -> Claim | None:
    """The request is kept only as a keyed digest: its body holds identifiers, which must not be guessable.

    Encoded only when a key is given: most writes carry none, and a 10,000-record body is not free to encode.
    """
    if header is None:
        return None
    if not 1 <= len(header) <= 255:
        raise ProblemError("Idempotency-Key must be 1 to 255 characters", title="Bad Idempotency-Key")
    return Claim(
        api_key_id,
        hashlib.sha256(header.encode()).digest(),
        hmac.digest(digest_key, msgspec.json.encode(request), "sha256"),
        ttl_hours,
    )


async def claim(conn: asyncpg.Connection, c: Claim) -> Replay | None:
    """Inside the caller's transaction: None if the key is new (now held), else the first answer.

    A concurrent call with the same key waits on the row lock until the first commits, then replays.
    """
    if await conn.execute(CLAIM_KEY, c.api_key_id, c.key_hash, c.request_hash, c.ttl_hours) == "INSERT 0 1":
        return None
    row = await conn.fetchrow(SELECT_KEY, c.api_key_id, c.key_hash)
    if row["request_hash"] != c.request_hash:
        raise InvalidInput(
            f"This {c.kind} was used with a different body",
            title=f"{c.kind} reused",
        )
    return Replay(row["status_code"], row["response"])


async def store(conn: asyncpg.Connection, c: Claim, status_code: int, body: bytes) -> None:
    await conn.execute(STORE_RESPONSE, c.api_key_id, c.key_hash, status_code, body)


async def delete_expired(conn: asyncpg.Connection, ttl_hours: int) -> int:
    return int((await conn.execute(DELETE_EXPIRED, ttl_hours)).rsplit(" ", 1)[-1])
