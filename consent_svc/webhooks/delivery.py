"""Outbound delivery: events from the outbox to every subscription that wants them, signed, in order, retried.

One process leads at a time (a session advisory lock held on one connection; if it dies, its connection drops,
the lock with it, and another takes over). `consent-svc serve` runs a dedicated delivery process
(`consent-svc deliver`) beside its workers, so deliveries never wait behind API requests in a worker's event
loop (measured under inbound load: a worker leading sent ~190 deliveries/s, starved by its own requests).
Workers stand by and lead only while no delivery process is there (one holds PRESENCE_LOCK), and hand over
as soon as one is back. The leader:

- dispatches: takes the events committed since the last round in a gap-free order (the `txid` horizon, as the
  audit integrator does), gives each the next sequence number, and writes one delivery row per subscription
  that wants it, in one transaction with the cursor that says how far it got;
- sends: one sender per live subscription, each sending its pending deliveries one at a time in sequence
  order, so a receiver sees events in the order they committed. A failed attempt holds that subscription's
  queue until it is retried (exponential backoff with jitter, for `webhook_retry_hours` from when it was
  queued), then the delivery is dead-lettered and the queue moves on. At most SENDS_AT_ONCE requests are in flight per worker: a slow or dead
  receiver holds its own queue and nothing else, and never the API's requests.

A delivery is marked delivered after its 2xx: a crash in between sends it again after the restart, so
receivers must drop repeats by `webhook-id` (at-least-once, as Standard Webhooks assumes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from datetime import UTC, datetime, timedelta
from typing import NamedTuple
from uuid import UUID

import aiohttp
import asyncpg
import msgspec

from consent_svc import crypto, outbox, signing, tasks
from consent_svc.audit import store as audit_store
from consent_svc.settings import Settings
from consent_svc.webhooks import ssrf, subscriptions
from consent_svc.webhooks.subscriptions import Target

log = logging.getLogger("consent_svc.webhooks")

LEADER_LOCK = 0x636F6E73656E7406
PRESENCE_LOCK = 0x636F6E73656E7407  # held by every delivery process while it runs
STANDBY_SECONDS = 0.5  # how often a delivery process that does not lead tries to
WORKER_STANDBY_SECONDS = 2.0  # how often an API worker does, when no delivery process is there
POLL_SECONDS = 0.05  # how often the leader looks for new events
TARGETS_SECONDS = 1.0  # how often it re-reads subscriptions (a pause or an edit applies within this)
IDLE_SECONDS = 1.0  # how often an idle sender looks for work (replays made by another worker)
DISPATCH_CHUNK = 5_000
SEND_BATCH = 200
MARK_EVERY = 100
MARK_SECONDS = 0.2
SENDS_AT_ONCE = 16
CONNECT_SECONDS = 5.0
ATTEMPT_SECONDS = 10.0  # the whole attempt: connect, send, and the receiver's answer
DNS_CACHE_SECONDS = (
    10  # addresses are checked when resolved: a name re-resolves (and is re-checked) this often
)
MAX_RESPONSE_BYTES = 64 * 1024  # read and dropped: only the status matters
MAX_BACKOFF_SECONDS = 3600.0
RETRIED_STATUSES = frozenset({408, 425, 429})  # and every 5xx; other answers are final
USER_AGENT = "consent-svc-webhooks/1"

SELECT_CURSOR = "SELECT txid, event_id, seq FROM outbox_cursor FOR UPDATE"
SELECT_HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())"
SELECT_EVENTS = """
SELECT txid, event_id, type, purpose, audience
FROM outbox
WHERE (txid, event_id) > ($1::xid8, $2::uuid) AND txid < $3::xid8
ORDER BY txid, event_id
LIMIT $4
"""
UPDATE_CURSOR = "UPDATE outbox_cursor SET txid = $1, event_id = $2, seq = $3"
DELIVERY_COLUMNS = ("subscription_id", "seq", "txid", "event_id")
SELECT_DUE = """
SELECT d.seq, d.event_id, d.attempts, d.next_attempt_at, d.queued_at, o.type, o.created_at,
       o.subject_id, o.data, o.sealed
FROM webhook_deliveries d
JOIN outbox o ON (o.txid, o.event_id) = (d.txid, d.event_id)
WHERE d.subscription_id = $1 AND d.status = 'pending'
ORDER BY d.seq
LIMIT $2
"""
# Successes are marked in batches: one statement per MARK_EVERY deliveries or MARK_SECONDS, not one each. A crash
# before the mark sends those again, which at-least-once allows.
MARK_DELIVERED = """
UPDATE webhook_deliveries d
SET status = 'delivered', attempts = d.attempts + 1, first_attempt_at = coalesce(d.first_attempt_at, t.at),
    last_attempt_at = t.at, delivered_at = t.at, last_status = t.status, last_error = NULL
FROM unnest($2::bigint[], $3::timestamptz[], $4::integer[]) AS t (seq, at, status)
WHERE d.subscription_id = $1 AND d.seq = t.seq AND d.status = 'pending'
"""
MARK_FAILED = """
UPDATE webhook_deliveries
SET status = $3, attempts = attempts + 1, first_attempt_at = coalesce(first_attempt_at, $4),
    last_attempt_at = $4, next_attempt_at = $5, last_status = $6, last_error = $7
WHERE subscription_id = $1 AND seq = $2 AND status = 'pending'
"""


class EventBody(msgspec.Struct, frozen=True):
    """A delivered body: Standard Webhooks' `{"type", "timestamp", "data"}` plus `sequence`, the event's place in
    commit order; the `webhook-id` header is the event's id, the same on every retry and replay."""

    type: str
    timestamp: datetime
    sequence: int
    data: msgspec.Raw


class Attempt(NamedTuple):
    status: int | None  # the receiver's HTTP status, if it answered
    error: str | None  # None: delivered
    retry: bool  # worth trying again later
    retry_after: float | None = None  # what the receiver asked for (429, 503)


class DeadLetter(msgspec.Struct, frozen=True):
    """The audit payload of a delivery given up on (a withdrawal some system may not have heard of)."""

    attempts: int
    event_type: str
    last_error: str
    seq: int
    subscription_id: UUID
    webhook_id: UUID


def retry_delay(attempts: int, base: float, jitter: float) -> float:
    """Seconds before the next attempt after `attempts` failed ones: base, 2*base, 4*base ... up to an hour,
    times a factor in [0.5, 1) from `jitter` in [0, 1), so receivers coming back are not hit all at once."""
    return min(MAX_BACKOFF_SECONDS, base * 2 ** min(attempts - 1, 30)) * (0.5 + jitter / 2)


async def dispatch(conn: asyncpg.Connection) -> set[UUID]:
    """Fan out the events committed since the last round; the subscriptions that got deliveries.

    Subscriptions are read in the same transaction, after the horizon: one that committed before an event did
    is seen, so a new subscription gets every event committed after it."""
    async with conn.transaction(isolation="read_committed"):
        txid, event_id, seq = await conn.fetchrow(SELECT_CURSOR)
        horizon = await conn.fetchval(SELECT_HORIZON)  # after the row lock: a rival leader's round is done
        if horizon <= txid:
            log.error(
                "outbox not dispatched: transaction ids went backwards (database restored from a dump?)"
            )
            return set()
        rows = await conn.fetch(SELECT_EVENTS, txid, event_id, horizon, DISPATCH_CHUNK)
        if not rows:
            return set()
        interests = await subscriptions.interests(conn)
        deliveries = []
        for row in rows:
            seq += 1
            audience = row["audience"]
            for interest in interests:
                if interest.wants(row["type"], row["purpose"]) and (
                    audience is None or interest.id in audience
                ):
                    deliveries.append((interest.id, seq, row["txid"], row["event_id"]))
        if deliveries:
            await conn.copy_records_to_table(
                "webhook_deliveries", columns=DELIVERY_COLUMNS, records=deliveries
            )
        await conn.execute(UPDATE_CURSOR, rows[-1]["txid"], rows[-1]["event_id"], seq)
    return {d[0] for d in deliveries}


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until the event is set or the time is up. Not asyncio.wait_for: on Python 3.11 it can swallow a
    cancellation that lands as the event is set, and a stop() then waited forever (seen: a test's app shutdown
    hung right after a subscription was paused)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await event.wait()


async def _dedicated_present(conn: asyncpg.Connection) -> bool:
    if await conn.fetchval("SELECT pg_try_advisory_lock($1)", PRESENCE_LOCK):
        await conn.execute("SELECT pg_advisory_unlock($1)", PRESENCE_LOCK)
        return False
    return True


class Outbound(tasks.Background):
    """One per worker: stands by, or leads (dispatches and sends)."""

    def __init__(self, keys: crypto.Keys, settings: Settings, dedicated: bool = False) -> None:
        self.keys = keys
        self.dedicated = dedicated
        self.standby = STANDBY_SECONDS if dedicated else WORKER_STANDBY_SECONDS
        self.allow_private = settings.webhook_allow_private_networks
        self.retry_window = timedelta(hours=settings.webhook_retry_hours)
        self.retry_base = settings.webhook_retry_base_seconds
        self.targets: dict[UUID, Target] = {}
        self._senders: dict[UUID, asyncio.Task] = {}
        self._wakes: dict[UUID, asyncio.Event] = {}
        self._changed = asyncio.Event()
        self._sends = asyncio.Semaphore(SENDS_AT_ONCE)
        self._client: aiohttp.ClientSession | None = None

    async def stop(self) -> None:
        await super().stop()
        await tasks.cancel(*self._senders.values())  # a sender left by a leader that was cancelled twice

    def subscriptions_changed(self) -> None:
        """A subscription was made, edited, paused or deleted here: the leader (if this worker) re-reads now."""
        self._changed.set()

    async def _run(self) -> None:
        while True:
            try:
                async with self.pool.acquire() as conn:
                    if self.dedicated:
                        # Held for as long as this connection lives: workers see a delivery process is there.
                        await conn.fetchval("SELECT pg_try_advisory_lock($1)", PRESENCE_LOCK)
                    while True:
                        may_lead = self.dedicated or not await _dedicated_present(conn)
                        if may_lead and await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK):
                            try:
                                await self._lead(conn)
                            finally:
                                await self._stop_senders()
                                if not conn.is_closed():
                                    await conn.execute("SELECT pg_advisory_unlock($1)", LEADER_LOCK)
                        if not self.dedicated:
                            break  # a worker's pool connection goes back to its requests while it stands by
                        await asyncio.sleep(self.standby)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("webhook delivery paused: %s", type(exc).__name__)
            except Exception:
                # A bug must not stop delivery for good: say so, and lead again after the pause.
                log.exception("webhook delivery failed")
            await asyncio.sleep(self.standby)

    async def _lead(self, conn: asyncpg.Connection) -> None:
        # aiohttp rather than httpx: a delivery cost 0.5 ms of client CPU against 1.8 ms (3,000 POSTs to
        # bench/receiver.py, keep-alive). No proxy from the environment (trust_env off): it would escape the checks.
        connector = aiohttp.TCPConnector(
            limit=SENDS_AT_ONCE,
            resolver=ssrf.CheckedResolver(self.allow_private),
            ttl_dns_cache=DNS_CACHE_SECONDS,
        )
        timeout = aiohttp.ClientTimeout(total=ATTEMPT_SECONDS, sock_connect=CONNECT_SECONDS)
        async with aiohttp.ClientSession(
            connector=connector, timeout=timeout, auto_decompress=False, trust_env=False
        ) as self._client:
            refreshed = 0.0
            while True:
                if self._changed.is_set() or time.monotonic() - refreshed >= TARGETS_SECONDS:
                    if not self.dedicated and await _dedicated_present(conn):
                        return  # hand over to the delivery process
                    self._changed.clear()
                    self.targets = await subscriptions.targets(conn, self.keys)
                    refreshed = time.monotonic()
                    self._start_senders()
                for subscription_id in await dispatch(conn):
                    if subscription_id in self._wakes:
                        self._wakes[subscription_id].set()
                    elif subscription_id not in self.targets:
                        self._changed.set()  # a subscription this worker has not read yet: read it now
                await _wait(self._changed, POLL_SECONDS)

    def _start_senders(self) -> None:
        for subscription_id, target in self.targets.items():
            running = self._senders.get(subscription_id)
            if not target.paused and (running is None or running.done()):
                self._wakes[subscription_id] = asyncio.Event()
                self._senders[subscription_id] = asyncio.get_running_loop().create_task(
                    self._send_all(subscription_id)
                )

    async def _stop_senders(self) -> None:
        await tasks.cancel(*self._senders.values())
        self._senders.clear()
        self._wakes.clear()

    async def _send_all(self, subscription_id: UUID) -> None:
        """A subscription's queue, in sequence order, until it is paused or deleted."""
        wake = self._wakes[subscription_id]
        delivered: list[tuple[int, datetime, int]] = []  # (seq, when, status), not yet marked
        while True:
            target = self.targets.get(subscription_id)
            if target is None or target.paused:
                return
            try:
                wake.clear()
                async with self.pool.acquire() as conn:
                    due = await conn.fetch(SELECT_DUE, subscription_id, SEND_BATCH)
                wait = IDLE_SECONDS if not due else 0
                marked = time.monotonic()
                try:
                    for row in due:
                        target = self.targets.get(subscription_id)
                        if target is None or target.paused:
                            return
                        now = datetime.now(UTC)
                        if row["next_attempt_at"] > now:
                            wait = min(IDLE_SECONDS, (row["next_attempt_at"] - now).total_seconds())
                            break
                        attempt = await self._attempt(target, row)
                        if attempt.error is None:
                            delivered.append((row["seq"], now, attempt.status))
                            if len(delivered) >= MARK_EVERY or time.monotonic() - marked >= MARK_SECONDS:
                                await self._mark_delivered(subscription_id, delivered)
                                marked = time.monotonic()
                            continue
                        await self._mark_delivered(subscription_id, delivered)
                        await self._record_failure(subscription_id, row, attempt, now)
                        if attempt.retry:
                            break  # the head waits for its retry; its next_attempt_at says how long
                finally:
                    await self._mark_delivered(subscription_id, delivered)
                if wait > 0:
                    await _wait(wake, wait)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("webhook sender paused: %s", type(exc).__name__)
                await asyncio.sleep(STANDBY_SECONDS)

    async def _mark_delivered(
        self, subscription_id: UUID, delivered: list[tuple[int, datetime, int]]
    ) -> None:
        if not delivered:
            return
        async with self.pool.acquire() as conn:
            await conn.execute(MARK_DELIVERED, subscription_id, *map(list, zip(*delivered, strict=True)))
        delivered.clear()

    async def _attempt(self, target: Target, row: asyncpg.Record) -> Attempt:
        data = outbox.opened(self.keys, row["event_id"], row["data"], row["sealed"])
        body = msgspec.json.encode(EventBody(row["type"], row["created_at"], row["seq"], msgspec.Raw(data)))
        msg_id = str(row["event_id"])
        stamp = int(time.time())
        headers = {
            "webhook-id": msg_id,
            "webhook-timestamp": str(stamp),
            "webhook-signature": " ".join(signing.signature(k, msg_id, stamp, body) for k in target.keys),
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        url = ssrf.parse(target.url, https_only=False)  # the scheme was checked when it was registered
        address = ssrf.literal(url.hostname)
        try:
            if address is not None:
                ssrf.check(url.hostname, [address], self.allow_private)
            async with (
                self._sends,
                self._client.post(target.url, data=body, headers=headers, allow_redirects=False) as response,
            ):
                await response.content.read(MAX_RESPONSE_BYTES)  # what is left unread closes the connection
                status = response.status
                retry_after = response.headers.get("retry-after", "")
        except ssrf.UnsafeUrl as exc:
            return Attempt(None, str(exc), retry=True)
        except TimeoutError:
            return Attempt(None, f"no answer within {ATTEMPT_SECONDS:g} s", retry=True)
        except (aiohttp.ClientError, OSError) as exc:
            return Attempt(None, f"connection failed: {type(exc).__name__}", retry=True)
        if 200 <= status < 300:
            return Attempt(status, None, retry=False)
        if 300 <= status < 400:
            return Attempt(status, f"HTTP {status}: redirects are not followed", retry=False)
        retry = status >= 500 or status in RETRIED_STATUSES
        wait = float(retry_after) if retry_after.isdigit() else None
        return Attempt(status, f"HTTP {status}", retry=retry, retry_after=wait)

    async def _record_failure(
        self, subscription_id: UUID, row: asyncpg.Record, attempt: Attempt, at: datetime
    ) -> None:
        async with self.pool.acquire() as conn:
            attempts = row["attempts"] + 1
            delay = retry_delay(attempts, self.retry_base, random.random())
            if attempt.retry_after is not None:
                delay = min(MAX_BACKOFF_SECONDS, max(delay, attempt.retry_after))
            # From when it was queued: behind a receiver that stays down, what waited longer than the window
            # gets one attempt, not a window of its own, so the queue drains.
            dead = not attempt.retry or at - row["queued_at"] >= self.retry_window
            status = "dead" if dead else "pending"
            next_at = at + timedelta(seconds=delay)
            async with conn.transaction():
                await conn.execute(
                    MARK_FAILED,
                    subscription_id,
                    row["seq"],
                    status,
                    at,
                    next_at,
                    attempt.status,
                    attempt.error,
                )
                if dead:
                    letter = DeadLetter(
                        attempts, row["type"], attempt.error, row["seq"], subscription_id, row["event_id"]
                    )
                    entry = audit_store.entry(
                        "webhook.dead_lettered", audit_store.SYSTEM, letter, row["subject_id"], "dead"
                    )
                    await audit_store.append(conn, [entry])
