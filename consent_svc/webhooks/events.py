"""The outbox: domains announce a change by appending its event in the transaction that makes the change, so
there is no change without its event and no event without its change. webhooks/delivery.py sends them.

A delivered body is Standard Webhooks' `{"type", "timestamp", "data"}` plus `sequence`, the event's place in
commit order; the `webhook-id` header is the event's id, the same on every retry and replay.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import crypto, db
from consent_svc.consents.types import Source

OUTBOX_COLUMNS = ("event_id", "type", "purpose", "subject_id", "data", "sealed", "audience")
SEALING_KEY = "outbox sealing"
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


class ConsentChanged(msgspec.Struct, frozen=True, gc=False):
    """`consent.changed`: a record became the subject's current consent for a purpose. Names the subject by its
    pseudonymous id only: a receiver maps it with POST /v1/subjects/lookup from identifiers it already holds."""

    subject_id: UUID
    purpose: str
    status: str
    record_id: UUID
    collected_at: datetime
    expires_at: datetime | None
    region: str
    source: Source


class EventBody(msgspec.Struct, frozen=True):
    type: str
    timestamp: datetime
    sequence: int
    data: msgspec.Raw


def row(event_id: UUID, event_type: str, purpose: str | None, subject_id: UUID | None, data: bytes) -> tuple:
    return (event_id, event_type, purpose, subject_id, data, False, None)


def sealed_row(
    keys: crypto.Keys,
    event_id: UUID,
    event_type: str,
    subject_id: UUID | None,
    data: bytes,
    audience: list[UUID] | None,
) -> tuple:
    """An event that carries personal data: sealed at rest, sent only to `audience` (subscription ids; None: every
    subscription that asked for the type)."""
    sealed = crypto.seal(keys.derive(SEALING_KEY), data, event_id.bytes)
    return (event_id, event_type, None, subject_id, sealed, True, audience)


def opened(keys: crypto.Keys, event_id: UUID, data: bytes, sealed: bool) -> bytes:
    return crypto.unseal(keys.derive(SEALING_KEY), data, event_id.bytes) if sealed else data


async def append(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    """Rows as OUTBOX_COLUMNS (made by `row`)."""
    await db.insert_rows(conn, "outbox", OUTBOX_COLUMNS, list(rows))


def body(event_type: str, created_at: datetime, seq: int, data: bytes) -> bytes:
    return msgspec.json.encode(EventBody(event_type, created_at, seq, msgspec.Raw(data)))


async def delete_expired(conn: asyncpg.Connection, retention_days: int) -> None:
    await conn.execute(DELETE_OLD_DELIVERIES, retention_days)
    await conn.execute(DELETE_OLD_EVENTS, retention_days)
