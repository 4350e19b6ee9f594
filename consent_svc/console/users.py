"""Console users and their sessions: argon2id passwords, lockout after repeated failures, server-side sessions
with idle and absolute expiry, a CSRF token per session."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Literal
from uuid import UUID

import asyncpg
import msgspec
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from consent_svc import crypto, ids
from consent_svc.consents.identity import IdentifierError, normalize

Role = Literal["legal", "privacy_ops", "admin"]
ROLES: tuple[Role, ...] = ("legal", "privacy_ops", "admin")
# A role is a set of the API's scopes: the console does what a key with them could do.
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "legal": frozenset({"audit:read", "consents:read"}),
    "privacy_ops": frozenset({"requests:manage", "consents:read", "audit:read"}),
    "admin": frozenset({"admin"}),
}
MAX_FAILURES = 5
LOCKOUT = timedelta(minutes=15)
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
HASHER = PasswordHasher()  # argon2id with the library's defaults (RFC 9106 second recommendation)
# Compared against when the e-mail is unknown, so a wrong e-mail takes as long as a wrong password.
DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))

INSERT_USER = """
INSERT INTO console_users (user_id, email_hash, email_enc, role, password_hash) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (email_hash) DO NOTHING
RETURNING created_at
"""
SELECT_USER_BY_EMAIL = """
SELECT user_id, role, password_hash, failed_attempts, locked_until, disabled_at
FROM console_users WHERE email_hash = $1 FOR UPDATE
"""
RECORD_FAILURE = """
UPDATE console_users
SET failed_attempts = failed_attempts + 1,
    locked_until = CASE WHEN failed_attempts + 1 >= $2 THEN $3 ELSE locked_until END
WHERE user_id = $1
RETURNING failed_attempts
"""
RECORD_SUCCESS = (
    "UPDATE console_users SET failed_attempts = 0, locked_until = NULL, password_hash = $2 WHERE user_id = $1"
)
INSERT_SESSION = """
INSERT INTO console_sessions (token_hash, user_id, csrf_token, expires_at) VALUES ($1, $2, $3, $4)
"""
# Touching the session and reading it are one statement: an idle or expired session is not found.
TOUCH_SESSION = """
UPDATE console_sessions s SET last_seen_at = $2
FROM console_users u
WHERE s.token_hash = $1 AND u.user_id = s.user_id AND u.disabled_at IS NULL
  AND s.expires_at > $2 AND s.last_seen_at > $2 - make_interval(secs => $3)
RETURNING s.user_id, u.role, s.csrf_token
"""
DELETE_SESSION = "DELETE FROM console_sessions WHERE token_hash = $1"
SELECT_EMAILS = "SELECT user_id, email_enc FROM console_users WHERE user_id = ANY($1::uuid[])"
SELECT_KEY_NAMES = "SELECT id, name FROM api_keys WHERE id = ANY($1::text[])"
DELETE_EXPIRED_SESSIONS = """
DELETE FROM console_sessions WHERE expires_at < $1 OR last_seen_at < $1 - make_interval(secs => $2)
"""


class SignedIn(msgspec.Struct, frozen=True):
    user_id: UUID
    role: str
    csrf_token: str

    def may(self, scope: str) -> bool:
        scopes = ROLE_SCOPES[self.role]
        return scope in scopes or "admin" in scopes


class SignInRefused(msgspec.Struct, frozen=True):
    """Wrong e-mail or password (never which), or a locked account."""

    locked: bool
    user_id: UUID | None = None


def _email_hash(keys: crypto.Keys, email: str) -> bytes:
    return crypto.keyed_digest(keys.derive("console user"), normalize("email", email).encode())


def _token_hash(keys: crypto.Keys, token: str) -> bytes:
    return crypto.keyed_digest(keys.derive("console session"), token.encode())


async def create_user(
    conn: asyncpg.Connection, keys: crypto.Keys, email: str, role: Role, password: str
) -> UUID | None:
    """None if a user with that e-mail exists. IdentifierError for something that is not an e-mail address."""
    email = normalize("email", email)
    user_id = ids.uuid7s(1)[0]
    sealed = crypto.seal(keys.derive("console user e-mail"), email.encode(), user_id.bytes)
    made = await conn.fetchval(
        INSERT_USER, user_id, _email_hash(keys, email), sealed, role, HASHER.hash(password)
    )
    return user_id if made is not None else None


async def actor_names(conn: asyncpg.Connection, keys: crypto.Keys, actors: set[str]) -> dict[str, str]:
    """Readable names for the actors the log records by id: a console user's e-mail, an API key's name.

    The log keeps ids (an e-mail there could not be erased); the names are looked up when a page shows them.
    """
    user_ids = [UUID(a[5:]) for a in actors if a.startswith("user:") and _is_uuid(a[5:])]
    names = {}
    if user_ids:
        for row in await conn.fetch(SELECT_EMAILS, user_ids):
            email = crypto.unseal(keys.derive("console user e-mail"), row["email_enc"], row["user_id"].bytes)
            names[f"user:{row['user_id']}"] = email.decode()
    key_ids = [a for a in actors if a not in names and ":" not in a]
    if key_ids:
        for row in await conn.fetch(SELECT_KEY_NAMES, key_ids):
            names[row["id"]] = f"API key {row['name']}"
    return names


def _is_uuid(text: str) -> bool:
    try:
        UUID(text)
    except ValueError:
        return False
    return True


async def sign_in(
    conn: asyncpg.Connection, keys: crypto.Keys, email: str, password: str, now: datetime
) -> tuple[str, SignedIn] | SignInRefused:
    """A new session (its cookie token, and who signed in), or why not. Run in a transaction, committed either
    way: the user row is locked, so concurrent guesses count one by one, and a failure counts."""
    try:
        row = await conn.fetchrow(SELECT_USER_BY_EMAIL, _email_hash(keys, email))
    except IdentifierError:
        row = None
    if row is None or row["disabled_at"] is not None:
        _verify(DUMMY_HASH, password)
        return SignInRefused(locked=False)
    if row["locked_until"] is not None and row["locked_until"] > now:
        return SignInRefused(locked=True, user_id=row["user_id"])
    if not _verify(row["password_hash"], password):
        failures = await conn.fetchval(RECORD_FAILURE, row["user_id"], MAX_FAILURES, now + LOCKOUT)
        return SignInRefused(locked=failures >= MAX_FAILURES, user_id=row["user_id"])
    rehashed = (
        HASHER.hash(password) if HASHER.check_needs_rehash(row["password_hash"]) else row["password_hash"]
    )
    await conn.execute(RECORD_SUCCESS, row["user_id"], rehashed)
    token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    await conn.execute(INSERT_SESSION, _token_hash(keys, token), row["user_id"], csrf, now + ABSOLUTE)
    return token, SignedIn(row["user_id"], row["role"], csrf)


def _verify(password_hash: str, password: str) -> bool:
    try:
        return HASHER.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


async def session(conn: asyncpg.Connection, keys: crypto.Keys, token: str, now: datetime) -> SignedIn | None:
    row = await conn.fetchrow(TOUCH_SESSION, _token_hash(keys, token), now, IDLE.total_seconds())
    return SignedIn(row["user_id"], row["role"], row["csrf_token"]) if row is not None else None


async def sign_out(conn: asyncpg.Connection, keys: crypto.Keys, token: str) -> None:
    await conn.execute(DELETE_SESSION, _token_hash(keys, token))


async def delete_expired_sessions(conn: asyncpg.Connection, now: datetime) -> None:
    await conn.execute(DELETE_EXPIRED_SESSIONS, now, IDLE.total_seconds())
