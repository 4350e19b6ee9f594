"""The outbox: a domain announces a change by appending its event in the transaction that makes the change, so
there is no change without its event and no event without its change.

Like the audit log, it is written by every domain and knows none of them: each domain owns its events' payload
types (`consents.types.ConsentChanged`, `requests.types.RequestEvent` ...), and `webhooks/delivery.py` reads
the table and sends. An event that carries personal data (one-time codes, identifiers, export links) is sealed
at rest and names the subscriptions it may reach (its audience).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import crypto, db, ids

OUTBOX_COLUMNS = ("event_id", "type", "purpose", "subject_id", "data", "sealed", "audience")
SEALING_KEY = "outbox sealing"


class OutboxEvent(msgspec.Struct, frozen=True, gc=False):
    """One outbox row. `purpose` lets a subscription filter by purpose without opening `data`; `audience`
    (subscription ids) is set only for sealed events: None sends to every subscription that asked for the
    type."""

    event_id: UUID
    type: str
    purpose: str | None
    subject_id: UUID | None
    data: bytes
    sealed: bool = False
    audience: list[UUID] | None = None


def event(
    event_type: str,
    payload: Any,
    *,
    subject_id: UUID | None = None,
    purpose: str | None = None,
    event_id: UUID | None = None,
) -> OutboxEvent:
    """An event whose payload names no person in clear (pseudonymous subject ids at most)."""
    return OutboxEvent(
        event_id or ids.uuid7s(1)[0], event_type, purpose, subject_id, msgspec.json.encode(payload)
    )


def sealed_event(
    keys: crypto.Keys, event_type: str, payload: Any, *, audience: list[UUID] | None = None
) -> OutboxEvent:
    """An event that carries personal data: sealed at rest under the outbox key, bound to its own id."""
    event_id = ids.uuid7s(1)[0]
    sealed = crypto.seal(keys.derive(SEALING_KEY), msgspec.json.encode(payload), event_id.bytes)
    return OutboxEvent(event_id, event_type, None, None, sealed, True, audience)


def opened(keys: crypto.Keys, event_id: UUID, data: bytes, sealed: bool) -> bytes:
    """An event's payload as it is sent."""
    return crypto.unseal(keys.derive(SEALING_KEY), data, event_id.bytes) if sealed else data


async def append(conn: asyncpg.Connection, events: Sequence[OutboxEvent]) -> None:
    if events:
        await db.insert_rows(conn, "outbox", OUTBOX_COLUMNS, [msgspec.structs.astuple(e) for e in events])
