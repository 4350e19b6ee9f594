"""SQL of data-subject requests, and functions that run it on a connection the caller holds (in its transaction)."""

from __future__ import annotations

from datetime import date, datetime
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import crypto
from consent_svc.requests.types import HistoryEntry, SubjectRequest, SystemProgress

INSERT_REQUEST = """
INSERT INTO requests (
    request_id, type, status, region, regime, policy_version, channel, lookup_hashes, subject_id, wrapped_key,
    master_key_id, identifiers_enc, details_enc, appeals, received_at, clock_start, due_at, acknowledge_by,
    created_by)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
"""
REQUEST_COLUMNS = """
request_id, type, status, region, regime, policy_version, channel, received_at, due_at, acknowledge_by, extended,
verified_at, closed_at, appeals, subject_id, lookup_hashes, clock_start, wrapped_key, identifiers_enc, details_enc
"""
SELECT_REQUEST = f"SELECT {REQUEST_COLUMNS} FROM requests WHERE request_id = $1"
SELECT_REQUEST_FOR_UPDATE = f"SELECT {REQUEST_COLUMNS} FROM requests WHERE request_id = $1 FOR UPDATE"
# A resubmission: the same type for an identifier of an open request received within the window.
SELECT_RECENT_SAME = """
SELECT request_id FROM requests
WHERE lookup_hashes && $1::bytea[] AND type = $2 AND received_at > now() - make_interval(secs => $3)
  AND status NOT IN ('completed', 'rejected')
ORDER BY received_at DESC
LIMIT 1
"""
SELECT_RELATED = f"""
SELECT {REQUEST_COLUMNS} FROM requests WHERE lookup_hashes && $1::bytea[] OR subject_id = ANY($2::uuid[])
ORDER BY received_at, request_id
"""
INSERT_HISTORY = """
INSERT INTO request_history (request_id, action, from_status, to_status, actor, reason)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING at
"""
SELECT_HISTORY = """
SELECT at, action, from_status, to_status, actor, reason FROM request_history WHERE request_id = $1 ORDER BY at, action
"""
UPDATE_STATUS = """
UPDATE requests SET status = $2, closed_at = CASE WHEN $2 IN ('completed', 'rejected') THEN now() END
WHERE request_id = $1
RETURNING closed_at
"""
# The status moves with the transition that follows (desk.LIFECYCLE "verify").
UPDATE_VERIFIED = """
UPDATE requests SET verified_at = $2, clock_start = $3, due_at = $4, subject_id = coalesce($5, subject_id)
WHERE request_id = $1
RETURNING subject_id
"""
UPDATE_EXTENDED = "UPDATE requests SET extended = true, due_at = $2 WHERE request_id = $1"
DESTROY_REQUEST_KEY = """
UPDATE requests SET wrapped_key = NULL, identifiers_enc = NULL, details_enc = NULL WHERE request_id = $1
"""
# Listing for the privacy team. Open requests by due date (the queue), everything else newest first; the
# predicates are constant fragments picked per filter, as in audit/store.py.
SELECT_PAGE = f"""
SELECT {REQUEST_COLUMNS} FROM requests
WHERE {{where}}
ORDER BY due_at, request_id
LIMIT $1
"""
PREDICATES = {
    "status": "status = ${}::text",
    "open": "status NOT IN ('completed', 'rejected')",
    "overdue": "status NOT IN ('completed', 'rejected') AND due_at < ${}::date",
    "due_before": "due_at < ${}::date",
    "after": "(due_at, request_id) > (${}::date, ${}::uuid)",
}
SELECT_SYSTEMS_OF = """
SELECT rs.system_id, s.name, rs.notified_at, rs.confirmed_at
FROM request_systems rs JOIN downstream_systems s USING (system_id)
WHERE rs.request_id = $1
ORDER BY s.name
"""
INSERT_REQUEST_SYSTEMS = """
INSERT INTO request_systems (request_id, system_id) SELECT $1, unnest($2::uuid[])
"""
CONFIRM_SYSTEM = """
UPDATE request_systems SET confirmed_at = coalesce(confirmed_at, now())
WHERE request_id = $1 AND system_id = $2
RETURNING confirmed_at
"""
COUNT_UNCONFIRMED = "SELECT count(*) FROM request_systems WHERE request_id = $1 AND confirmed_at IS NULL"
# Deadline announcements: each once per request.
MARK_DUE_SOON = """
UPDATE requests SET due_soon_sent = true
WHERE status NOT IN ('completed', 'rejected') AND NOT due_soon_sent AND due_at <= $1::date AND due_at >= $2::date
RETURNING request_id, type, status, region, due_at
"""
MARK_NEWLY_OVERDUE = """
UPDATE requests SET overdue_sent = true, due_soon_sent = true
WHERE status NOT IN ('completed', 'rejected') AND NOT overdue_sent AND due_at < $1::date
RETURNING request_id, type, status, region, due_at
"""


def identifiers_aad(request_id: UUID) -> bytes:
    return request_id.bytes + b"request identifiers"


def details_aad(request_id: UUID) -> bytes:
    return request_id.bytes + b"request details"


class Row(msgspec.Struct, frozen=True):
    """A request as stored, with what never leaves the service (hashes, sealed identifiers)."""

    request: SubjectRequest
    lookup_hashes: list[bytes]
    clock_start: date
    wrapped_key: bytes | None
    identifiers_enc: bytes | None
    details_enc: bytes | None


def _row(row: asyncpg.Record, today: date) -> Row:
    closed = row["status"] in ("completed", "rejected")
    request = SubjectRequest(
        id=row["request_id"],
        type=row["type"],
        status=row["status"],
        region=row["region"],
        regime=row["regime"],
        policy_version=row["policy_version"],
        channel=row["channel"],
        received_at=row["received_at"],
        due_at=row["due_at"],
        acknowledge_by=row["acknowledge_by"],
        extended=row["extended"],
        overdue=not closed and row["due_at"] < today,
        verified_at=row["verified_at"],
        closed_at=row["closed_at"],
        appeals=row["appeals"],
        subject_id=row["subject_id"],
    )
    return Row(
        request,
        list(row["lookup_hashes"]),
        row["clock_start"],
        row["wrapped_key"],
        row["identifiers_enc"],
        row["details_enc"],
    )


class NewRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A request as intake stores it: identifiers and details already sealed under its own data key."""

    request_id: UUID
    type: str
    status: str
    region: str
    regime: str
    policy_version: str
    channel: str
    lookup_hashes: list[bytes]
    subject_id: UUID | None
    wrapped_key: bytes
    master_key_id: str
    identifiers_enc: bytes
    details_enc: bytes | None
    appeals: UUID | None
    received_at: datetime
    clock_start: date
    due_at: date
    acknowledge_by: date | None
    created_by: str


async def insert(conn: asyncpg.Connection, new: NewRequest) -> None:
    """In INSERT_REQUEST's column order, which is NewRequest's field order."""
    await conn.execute(INSERT_REQUEST, *msgspec.structs.astuple(new))


async def get(conn: asyncpg.Connection, request_id: UUID, today: date, lock: bool = False) -> Row | None:
    row = await conn.fetchrow(SELECT_REQUEST_FOR_UPDATE if lock else SELECT_REQUEST, request_id)
    return _row(row, today) if row is not None else None


async def detailed(
    conn: asyncpg.Connection, keys: crypto.Keys, request_id: UUID, today: date
) -> SubjectRequest | None:
    """A request with what the person asked (`details`, while not erased), its history and systems."""
    found = await get(conn, request_id, today)
    if found is None:
        return None
    details = None
    if found.wrapped_key is not None and found.details_enc is not None:
        data_key = keys.unwrap(found.wrapped_key, request_id.bytes)
        details = msgspec.json.decode(crypto.unseal(data_key, found.details_enc, details_aad(request_id)))
    return msgspec.structs.replace(
        found.request,
        details=details,
        history=await history(conn, request_id),
        systems=await systems_of(conn, request_id),
    )


async def history(conn: asyncpg.Connection, request_id: UUID) -> list[HistoryEntry]:
    return [HistoryEntry(**dict(row)) for row in await conn.fetch(SELECT_HISTORY, request_id)]


async def systems_of(conn: asyncpg.Connection, request_id: UUID) -> list[SystemProgress]:
    return [SystemProgress(**dict(row)) for row in await conn.fetch(SELECT_SYSTEMS_OF, request_id)]


async def recent_same(
    conn: asyncpg.Connection, hashes: list[bytes], request_type: str, window: int
) -> UUID | None:
    return await conn.fetchval(SELECT_RECENT_SAME, hashes, request_type, window)


async def related(
    conn: asyncpg.Connection, hashes: list[bytes], subjects: list[UUID], today: date
) -> list[SubjectRequest]:
    return [_row(row, today).request for row in await conn.fetch(SELECT_RELATED, hashes, subjects)]


async def add_history(
    conn: asyncpg.Connection,
    request_id: UUID,
    action: str,
    from_status: str | None,
    to_status: str,
    actor: str,
    reason: str | None,
) -> datetime:
    return await conn.fetchval(INSERT_HISTORY, request_id, action, from_status, to_status, actor, reason)


async def set_status(conn: asyncpg.Connection, request_id: UUID, status: str) -> datetime | None:
    """The request's closing time, if the status closes it."""
    return await conn.fetchval(UPDATE_STATUS, request_id, status)


async def set_verified(
    conn: asyncpg.Connection,
    request_id: UUID,
    verified_at: datetime,
    clock_start: date,
    due_at: date,
    subject_id: UUID | None,
) -> UUID | None:
    """The request's subject, as it now stands."""
    return await conn.fetchval(UPDATE_VERIFIED, request_id, verified_at, clock_start, due_at, subject_id)


async def set_extended(conn: asyncpg.Connection, request_id: UUID, due_at: date) -> None:
    await conn.execute(UPDATE_EXTENDED, request_id, due_at)


async def destroy_key(conn: asyncpg.Connection, request_id: UUID) -> None:
    await conn.execute(DESTROY_REQUEST_KEY, request_id)


def open_identifiers(keys: crypto.Keys, row: Row) -> list[tuple[str, str]]:
    """The identifiers the requester gave, (kind, value); empty once the request's key is destroyed."""
    if row.wrapped_key is None or row.identifiers_enc is None:
        return []
    data_key = keys.unwrap(row.wrapped_key, row.request.id.bytes)
    return [
        tuple(pair)
        for pair in msgspec.json.decode(
            crypto.unseal(data_key, row.identifiers_enc, identifiers_aad(row.request.id))
        )
    ]


async def page(
    conn: asyncpg.Connection,
    today: date,
    status: str | None,
    overdue: bool,
    due_before: date | None,
    after: tuple[date, UUID] | None,
    limit: int,
    open_only: bool = False,
) -> list[SubjectRequest]:
    where, args = [], [limit]

    def add(name: str, *values) -> None:
        placeholders = [len(args) + 1 + i for i in range(len(values))]
        args.extend(values)
        where.append(PREDICATES[name].format(*placeholders))

    if status is not None:
        add("status", status)
    if open_only:
        add("open")
    if overdue:
        add("overdue", today)
    if due_before is not None:
        add("due_before", due_before)
    if after is not None:
        add("after", *after)
    sql = SELECT_PAGE.format(where=" AND ".join(where) or "true")
    return [_row(row, today).request for row in await conn.fetch(sql, *args)]


async def notify_systems(conn: asyncpg.Connection, request_id: UUID, system_ids: list[UUID]) -> None:
    await conn.execute(INSERT_REQUEST_SYSTEMS, request_id, system_ids)


async def confirm_system(conn: asyncpg.Connection, request_id: UUID, system_id: UUID) -> datetime | None:
    return await conn.fetchval(CONFIRM_SYSTEM, request_id, system_id)


async def unconfirmed(conn: asyncpg.Connection, request_id: UUID) -> int:
    return await conn.fetchval(COUNT_UNCONFIRMED, request_id)


async def due_soon(conn: asyncpg.Connection, until: date, today: date) -> list[asyncpg.Record]:
    return await conn.fetch(MARK_DUE_SOON, until, today)


async def newly_overdue(conn: asyncpg.Connection, today: date) -> list[asyncpg.Record]:
    return await conn.fetch(MARK_NEWLY_OVERDUE, today)
