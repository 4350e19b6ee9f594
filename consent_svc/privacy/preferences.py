"""The preference center's sessions: a one-time code proves the identifier, then the customer sees and changes
their choices for a while. Every change is a consent record with touchpoint `preference_center`."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import NamedTuple

import asyncpg
import msgspec

from consent_svc import crypto, outbox
from consent_svc.requests.verification import new_code

LIFETIME = timedelta(minutes=30)
MAX_ATTEMPTS = 5

INSERT_SESSION = """
INSERT INTO privacy_sessions (token_hash, lookup_hash, identifier_enc, region, code_hash, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
"""
SELECT_SESSION = """
SELECT lookup_hash, identifier_enc, region, code_hash, attempts, verified_at
FROM privacy_sessions WHERE token_hash = $1 AND expires_at > $2
FOR UPDATE
"""
COUNT_ATTEMPT = "UPDATE privacy_sessions SET attempts = attempts + 1 WHERE token_hash = $1"
VERIFY = "UPDATE privacy_sessions SET verified_at = $2 WHERE token_hash = $1"
DELETE_EXPIRED = "DELETE FROM privacy_sessions WHERE expires_at < $1"


class Session(NamedTuple):
    lookup_hash: bytes
    kind: str
    value: str
    region: str
    verified: bool


def _token_hash(keys: crypto.Keys, token: str) -> bytes:
    return crypto.keyed_digest(keys.derive("privacy session"), token.encode())


def _code_hash(keys: crypto.Keys, token_hash: bytes, code: str) -> bytes:
    return crypto.keyed_digest(keys.derive("privacy session code"), token_hash + code.encode())


async def start(
    conn: asyncpg.Connection,
    keys: crypto.Keys,
    kind: str,
    value: str,
    lookup_hash: bytes,
    region: str,
    now: datetime,
) -> str:
    """A new session (its cookie token); the code goes out sealed in `request.verification_requested`."""
    token = secrets.token_urlsafe(32)
    token_hash = _token_hash(keys, token)
    code = new_code()
    sealed = crypto.seal(
        keys.derive("privacy session identifier"), msgspec.json.encode([kind, value]), token_hash
    )
    expires_at = now + LIFETIME
    await conn.execute(
        INSERT_SESSION,
        token_hash,
        lookup_hash,
        sealed,
        region,
        _code_hash(keys, token_hash, code),
        expires_at,
    )
    body = {
        "type": "preferences",
        "code": code,
        "expires_at": expires_at.isoformat(),
        "identifiers": [{"type": kind, "value": value}],
    }
    await outbox.append(conn, [outbox.sealed_event(keys, "request.verification_requested", body)])
    return token


async def get(conn: asyncpg.Connection, keys: crypto.Keys, token: str, now: datetime) -> Session | None:
    row = await conn.fetchrow(SELECT_SESSION, _token_hash(keys, token), now)
    if row is None:
        return None
    kind, value = msgspec.json.decode(
        crypto.unseal(
            keys.derive("privacy session identifier"), row["identifier_enc"], _token_hash(keys, token)
        )
    )
    return Session(row["lookup_hash"], kind, value, row["region"], row["verified_at"] is not None)


async def check_code(
    conn: asyncpg.Connection, keys: crypto.Keys, token: str, code: str, now: datetime
) -> int | None:
    """None when verified now; else the tries left (0: locked, or no such session)."""
    token_hash = _token_hash(keys, token)
    row = await conn.fetchrow(SELECT_SESSION, token_hash, now)
    if row is None or row["attempts"] >= MAX_ATTEMPTS:
        return 0
    if crypto.constant_time_equal(row["code_hash"], _code_hash(keys, token_hash, code.strip())):
        await conn.execute(VERIFY, token_hash, now)
        return None
    await conn.execute(COUNT_ATTEMPT, token_hash)
    return MAX_ATTEMPTS - row["attempts"] - 1


async def delete_expired(conn: asyncpg.Connection, now: datetime) -> None:
    await conn.execute(DELETE_EXPIRED, now)
