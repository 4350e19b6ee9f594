"""API keys with scopes; one middleware on the /v1 router checks the scope each handler declares in its opt."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
from datetime import datetime

import asyncpg
import msgspec
from litestar.exceptions import ImproperlyConfiguredException
from litestar.types import ASGIApp, Receive, Scope, Send

from consent_svc.crypto import constant_time_equal
from consent_svc.errors import Forbidden, Unauthorized

log = logging.getLogger("consent_svc.auth")

SCOPES = (
    "consents:write",
    "consents:read",
    "decisions:check",
    "audit:read",
    "requests:manage",
    "requests:confirm",  # a downstream system's own key: confirms what it did for a request
    "webhooks:manage",
    "cmp:ingest",
    "admin",
)
ADMIN = "admin"
KEY_PREFIX = "csk_"

INSERT_KEY = (
    "INSERT INTO api_keys (id, name, secret_hash, scopes) VALUES ($1, $2, $3, $4) RETURNING created_at"
)
SELECT_KEY = "SELECT secret_hash, scopes, revoked_at FROM api_keys WHERE id = $1"
SELECT_KEYS = "SELECT id, name, scopes, created_at, revoked_at FROM api_keys ORDER BY created_at, id"
REVOCATION_CHANNEL = "consent_svc_api_key_revoked"
REVOCATION_ACK_CHANNEL = "consent_svc_api_key_revoked_ack"
KEYRING_APPLICATION_NAME = "consent-svc keyring"  # names the listeners, so that a revocation can count them
COUNT_KEYRINGS = "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1"
REVOKE_KEY = (
    "UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL RETURNING revoked_at"
)


class ApiKey(msgspec.Struct, frozen=True):
    id: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


class NewApiKey(msgspec.Struct, frozen=True):
    id: str
    key: str
    name: str
    scopes: list[str]


def _secret_hash(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def split_key(key: str) -> tuple[str, str] | None:
    """'csk_<id>_<secret>' -> (id, secret); None when it is not shaped like one of our keys."""
    if not key.startswith(KEY_PREFIX):
        return None
    key_id, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or len(key_id) != 12 or not secret:
        return None
    return key_id, secret


async def create_key(conn: asyncpg.Connection, name: str, scopes: list[str]) -> NewApiKey:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise ValueError(
            f"unknown scope(s) {unknown}; choose from {', '.join(SCOPES)}" if unknown else "no scope"
        )
    key_id = os.urandom(6).hex()
    secret = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
    scopes = sorted(set(scopes))
    await conn.execute(INSERT_KEY, key_id, name, _secret_hash(secret), scopes)
    return NewApiKey(id=key_id, key=f"{KEY_PREFIX}{key_id}_{secret}", name=name, scopes=scopes)


async def list_keys(conn: asyncpg.Connection) -> list[ApiKey]:
    return [ApiKey(**dict(row)) for row in await conn.fetch(SELECT_KEYS)]


async def revoke_key(conn: asyncpg.Connection, key_id: str, wait: float = 5.0) -> bool:
    """Revoke, tell every worker's KeyRing in the same transaction (delivered at commit), and return once each
    listening KeyRing has acknowledged that it dropped the key: the next request to any worker is refused.

    A notification alone races the next request (it reaches a worker's event loop in its own time); the
    acknowledgement closes that gap. A KeyRing that never answers (its worker just died) is waited for at most
    `wait` seconds; one that lost its connection authenticates from the database until it listens again.
    """
    acks: asyncio.Queue[str] = asyncio.Queue()

    def acked(connection: object, pid: int, channel: str, payload: str) -> None:
        acks.put_nowait(payload)

    await conn.add_listener(REVOCATION_ACK_CHANNEL, acked)
    try:
        async with conn.transaction():
            revoked = await conn.fetchval(REVOKE_KEY, key_id) is not None
            listening = await conn.fetchval(COUNT_KEYRINGS, KEYRING_APPLICATION_NAME)
            if revoked:
                await conn.execute("SELECT pg_notify($1, $2)", REVOCATION_CHANNEL, key_id)
        deadline = asyncio.get_running_loop().time() + wait
        pending = listening if revoked else 0
        while pending > 0:
            left = deadline - asyncio.get_running_loop().time()
            try:
                pending -= await asyncio.wait_for(acks.get(), max(left, 0)) == key_id
            except TimeoutError:
                log.warning("key revoked; %d worker(s) did not acknowledge in %.0f s", pending, wait)
                break
    finally:
        await conn.remove_listener(REVOCATION_ACK_CHANNEL, acked)
    return revoked


class ValidKey(msgspec.Struct, frozen=True):
    secret_hash: bytes
    scopes: frozenset[str]


class KeyRing:
    """Valid keys held in memory, so a request costs no database round trip to authenticate.

    Exactness: a revocation NOTIFYs every worker's listener at commit, which evicts the key. While no listener
    is connected (start-up, a lost connection), every request reads the database instead, and the cache is
    emptied when listening resumes, since notifications may have been missed in between.
    """

    RECONNECT_SECONDS = 1.0

    def __init__(self, pool: asyncpg.Pool, database_url: str) -> None:
        self.pool, self.database_url = pool, database_url
        self.valid: dict[str, ValidKey] = {}
        self.listener: asyncpg.Connection | None = None
        self._task: asyncio.Task | None = None
        self._acks: set[asyncio.Task] = set()

    @property
    def listening(self) -> bool:
        return self.listener is not None and not self.listener.is_closed()

    async def start(self) -> None:
        await self._listen()
        self._task = asyncio.create_task(self._keep_listening())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.listening:
            await self.listener.close()

    async def _listen(self) -> None:
        try:
            listener = await asyncpg.connect(
                self.database_url, timeout=5, server_settings={"application_name": KEYRING_APPLICATION_NAME}
            )
            await listener.add_listener(REVOCATION_CHANNEL, self._revoked)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning(
                "key revocation listener unavailable (%s): authenticating from the database",
                type(exc).__name__,
            )
            return
        self.valid.clear()
        self.listener = listener

    async def _keep_listening(self) -> None:
        while True:
            await asyncio.sleep(self.RECONNECT_SECONDS)
            if not self.listening:
                self.valid.clear()
                await self._listen()

    def _revoked(self, connection: object, pid: int, channel: str, key_id: str) -> None:
        self.valid.pop(key_id, None)
        # Dropped first, acknowledged after: the revoker returns only once every worker has let the key go.
        task = asyncio.get_running_loop().create_task(self._acknowledge(key_id))
        self._acks.add(task)
        task.add_done_callback(self._acks.discard)

    async def _acknowledge(self, key_id: str) -> None:
        with contextlib.suppress(asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            if self.listening:
                await self.listener.execute("SELECT pg_notify($1, $2)", REVOCATION_ACK_CHANNEL, key_id)

    async def authenticate(self, authorization: str | None) -> tuple[str, frozenset[str]]:
        """The key id and scopes of a valid, unrevoked key; Unauthorized otherwise (never says which part failed)."""
        scheme, _, token = (authorization or "").partition(" ")
        parts = split_key(token.strip()) if scheme.lower() == "bearer" else None
        if parts is None:
            raise Unauthorized("Send an API key as `Authorization: Bearer <key>`")
        key_id, secret = parts
        known = self.valid.get(key_id) if self.listening else None
        if known is None:
            row = await self.pool.fetchrow(SELECT_KEY, key_id)
            if row is not None and row["revoked_at"] is None:
                known = ValidKey(row["secret_hash"], frozenset(row["scopes"]))
                if self.listening:
                    self.valid[key_id] = known
        # Compare even when the id is unknown, so timing does not tell known ids from unknown ones.
        stored = known.secret_hash if known is not None else b"\0" * 32
        if not constant_time_equal(stored, _secret_hash(secret)) or known is None:
            raise Unauthorized("The API key is unknown or revoked")
        return key_id, known.scopes


class RequireScope:
    """ASGI middleware of the /v1 router: every handler declares opt={"scope": ...}, and the request's key must
    carry it (or `admin`). It does what a guard would: Litestar copies the route handler for each guard call,
    which cost 15-20% of a consent check's CPU (bench/check.py, closing note of issue 4)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = scope["route_handler"]
        # Litestar's own OPTIONS answer lists allowed methods, nothing more (and preflights carry no key).
        if scope["type"] == "http" and not (
            scope["method"] == "OPTIONS" and "OPTIONS" in handler.http_methods
        ):
            if handler.opt.get("public"):  # declared so, like a scope: never by omission
                await self.app(scope, receive, send)
                return
            needed = handler.opt.get("scope")
            if needed not in SCOPES:
                raise ImproperlyConfiguredException(f"{handler} declares no known scope")
            authorization = next(
                (v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None
            )
            key_id, scopes = await scope["litestar_app"].state.keyring.authenticate(authorization)
            if needed not in scopes and ADMIN not in scopes:
                raise Forbidden(f"This operation needs the `{needed}` scope")
            scope["state"]["api_key_id"] = key_id
        await self.app(scope, receive, send)
