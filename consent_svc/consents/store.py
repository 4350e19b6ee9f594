"""SQL of the ledger, and functions that run it on a connection the caller holds (in its transaction)."""

from __future__ import annotations

import functools
import hashlib
from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import crypto, cursors, db, ids, outbox
from consent_svc.audit import store as audit_store
from consent_svc.consents.identity import group_records, mask
from consent_svc.consents.types import (
    ConsentChanged,
    ConsentHistory,
    ConsentRecordOut,
    MaskedIdentifier,
    PurposeState,
    RecordReceipt,
    Source,
    Status,
    SubjectView,
)

SELECT_SUBJECTS_BY_HASH = """
SELECT lookup_hash, subject_id FROM identifier_lookup WHERE lookup_hash = ANY($1::bytea[])
"""
# A hash no subject holds may still be an erased person's: the suppression list says so (NULL subject).
SELECT_SUBJECTS_OR_SUPPRESSED = """
SELECT lookup_hash, subject_id FROM identifier_lookup WHERE lookup_hash = ANY($1::bytea[])
UNION ALL
SELECT lookup_hash, NULL FROM suppressed_identifiers WHERE lookup_hash = ANY($1::bytea[])
"""
# Crypto-shredding: the data key goes, so identifiers and proofs sealed under it can never be read again; the
# look-up rows go, so nothing finds the subject by an identifier; their keyed hashes stay as suppression
# entries, which name no subject. Records stay, append-only and now anonymous, as proof of what was decided.
ERASE_SUBJECTS = """
UPDATE subjects SET wrapped_key = NULL, erased_at = now()
WHERE subject_id = ANY($1::uuid[]) AND erased_at IS NULL
RETURNING subject_id
"""
SUPPRESS_HASHES = """
INSERT INTO suppressed_identifiers (lookup_hash, request_id)
SELECT h, $2 FROM unnest($1::bytea[]) AS h
ON CONFLICT DO NOTHING
"""
DELETE_LOOKUPS = "DELETE FROM identifier_lookup WHERE subject_id = ANY($1::uuid[]) RETURNING lookup_hash"
DELETE_IDENTIFIERS = "DELETE FROM subject_identifiers WHERE subject_id = ANY($1::uuid[])"
SELECT_WRAPPED_KEYS = """
SELECT subject_id, wrapped_key FROM subjects WHERE subject_id = ANY($1::uuid[]) AND wrapped_key IS NOT NULL
"""
# Sources already stored are skipped before the insert: ON CONFLICT alone would make every concurrent
# transaction naming the same source wait for the first to commit (a speculative insertion on that key), which
# serialized single-record writes from one CMP to one at a time (bench/inbound.py: 208 events/s before).
INSERT_SOURCES = """
INSERT INTO consent_sources (source_id, source)
SELECT i, s FROM unnest($1::bytea[], $2::jsonb[]) AS t (i, s)
WHERE NOT EXISTS (SELECT 1 FROM consent_sources c WHERE c.source_id = t.i)
ON CONFLICT DO NOTHING
"""
SELECT_FINGERPRINTS = """
SELECT subject_id, fingerprint, record_id, received_at
FROM consent_records
WHERE subject_id = ANY($1::uuid[]) AND fingerprint = ANY($2::bytea[])
"""
# Rows go in by db.insert_rows: binary COPY for bulk (measured: ~30% less time per row than INSERT ... SELECT
# FROM unnest), a plain INSERT for a few; a unique violation means a concurrent transaction won the key, and
# the caller retries the batch.
# Times (created_at, received_at) are left to the columns' DEFAULT now(): the transaction's time, read once by
# insert_records for its answer, and four timestamps per record fewer to encode.
SUBJECT_COLUMNS = ("subject_id", "wrapped_key", "master_key_id")
LOOKUP_COLUMNS = ("lookup_hash", "subject_id")
IDENTIFIER_COLUMNS = ("subject_id", "lookup_hash", "kind", "value_enc")
RECORD_COLUMNS = (
    "subject_id",
    "record_id",
    "purpose",
    "status",
    "collected_at",
    "region",
    "source_id",
    "expires_at",
    "proof_enc",
    "fingerprint",
)
STATE_COLUMNS = ("subject_id", "purpose", "record_id", "status", "collected_at", "expires_at", "actor")
# A record changes the current state only if it was collected later than the one there (ties: received
# later): an older record arriving late goes into the history and nowhere else.
UPSERT_STATE = """
INSERT INTO consent_state AS cur (subject_id, purpose, record_id, status, collected_at, expires_at, actor)
SELECT s, p, r, st, c, e, a
FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[], $6::timestamptz[], $7::text[])
     AS t (s, p, r, st, c, e, a)
ON CONFLICT (subject_id, purpose) DO UPDATE
SET record_id = EXCLUDED.record_id, status = EXCLUDED.status, collected_at = EXCLUDED.collected_at,
    received_at = EXCLUDED.received_at, expires_at = EXCLUDED.expires_at, actor = EXCLUDED.actor
WHERE (EXCLUDED.collected_at, EXCLUDED.received_at) > (cur.collected_at, cur.received_at)
RETURNING subject_id, purpose
"""
SELECT_SUBJECT = "SELECT subject_id, wrapped_key, created_at FROM subjects WHERE subject_id = $1"
SELECT_IDENTIFIERS = """
SELECT lookup_hash, kind, value_enc FROM subject_identifiers WHERE subject_id = $1 ORDER BY created_at, kind
"""
SELECT_STATE = """
SELECT cs.purpose, cs.status, cs.record_id, cs.collected_at, cs.received_at, cr.region, src.source, cs.expires_at
FROM consent_state cs
JOIN consent_records cr
  ON (cr.subject_id, cr.collected_at, cr.record_id) = (cs.subject_id, cs.collected_at, cs.record_id)
JOIN consent_sources src ON src.source_id = cr.source_id
WHERE cs.subject_id = $1
ORDER BY cs.purpose
"""
SELECT_HISTORY = """
SELECT cr.record_id, cr.purpose, cr.status, cr.collected_at, cr.received_at, cr.region, src.source, cr.expires_at,
       cr.proof_enc
FROM consent_records cr
JOIN consent_sources src ON src.source_id = cr.source_id
WHERE cr.subject_id = $1
  AND ($2::text IS NULL OR cr.purpose = $2)
  AND ($3::timestamptz IS NULL OR (cr.collected_at, cr.record_id) < ($3, $4::uuid))
ORDER BY cr.collected_at DESC, cr.record_id DESC
LIMIT $5
"""


class SubjectErased(Exception):
    """A record names an identifier of a subject whose key was destroyed by an erasure."""


class PreparedRecord(msgspec.Struct, frozen=True, gc=False):
    """A validated record, identifiers normalized and hashed; proof already JSON."""

    identifiers: list[tuple[str, str, bytes]]  # (kind, normalized value, look-up hash)
    purpose: str
    status: Status
    collected_at: datetime
    region: str
    source: Source
    source_id: bytes
    expires_at: datetime | None
    proof: bytes | None
    fingerprint: bytes


class RecordPayload(msgspec.Struct, frozen=True, gc=False):
    """A consent record's audit payload (the status is the entry's outcome). Fields in sorted order: encoded as
    is, it is the log's canonical form. Nothing personal: the proof is covered by the keyed fingerprint, the
    source (not personal) by its content hash in consent_sources."""

    collected_at: datetime
    expires_at: datetime | None
    fingerprint: bytes
    purpose: str
    region: str
    source_id: bytes


@functools.lru_cache(maxsize=4096)
def source_id(source: Source) -> bytes:
    """Sources repeat across records: each distinct one is hashed once per process."""
    return hashlib.sha256(msgspec.json.encode(source, order="sorted")).digest()


def _identifier_aad(subject_id: UUID, lookup_hash: bytes) -> bytes:
    return subject_id.bytes + b"identifier" + lookup_hash


def _proof_aad(subject_id: UUID, record_id: UUID) -> bytes:
    return subject_id.bytes + b"proof" + record_id.bytes


async def subjects_by_hash(conn: asyncpg.Connection, hashes: list[bytes]) -> dict[bytes, UUID]:
    return {
        row["lookup_hash"]: row["subject_id"] for row in await conn.fetch(SELECT_SUBJECTS_BY_HASH, hashes)
    }


class _Batch(msgspec.Struct, kw_only=True):
    """One insert_records call as it moves through its steps. Subjects are handled by their group number in the
    batch (an int), which is cheaper to hash than a UUID."""

    records: list[PreparedRecord]
    actor: str
    received_at: datetime
    known: dict[bytes, UUID] = {}  # look-up hash -> the subject that already holds it
    groups: list[int] = []  # record index -> its subject's group
    subjects: list[UUID] = []  # group -> subject id
    created: frozenset[int] = frozenset()  # groups whose subject this batch creates
    data_keys: dict[int, bytes] = {}  # group -> the subject's data key, where something is sealed under it
    receipts: list[RecordReceipt] = []  # one per record, in batch order
    fresh: list[tuple[int, UUID]] = []  # (record index, record id) of the records stored now
    changed: list[tuple] = []  # consent_state rows (STATE_COLUMNS) that became current


async def insert_records(
    conn: asyncpg.Connection, keys: crypto.Keys, records: list[PreparedRecord], actor: str
) -> list[RecordReceipt]:
    """Resolve subjects, link new identifiers, append the records and their audit entries (by `actor`: the
    API key id or `system`), advance the current state and announce what changed.

    Raises SubjectConflict (from identity) when a record's identifiers belong to two subjects, SubjectErased
    for an erased subject, and asyncpg's UniqueViolationError or DeadlockDetectedError when a concurrent
    transaction won a key: the caller retries the transaction. Keys are written in sorted order, so
    concurrent batches wait on each other rather than deadlock.
    """
    # What the rows' DEFAULT now() will hold: the transaction's time.
    batch = _Batch(records=records, actor=actor, received_at=await conn.fetchval("SELECT now()"))
    await _resolve_subjects(conn, keys, batch)
    await _link_identifiers(conn, batch)
    await _dedupe(conn, batch)
    if batch.fresh:
        await _copy_records(conn, batch)
        await _audit(conn, batch)
        await _advance_state(conn, batch)
        await _announce(conn, batch)
    return batch.receipts


async def _resolve_subjects(conn: asyncpg.Connection, keys: crypto.Keys, batch: _Batch) -> None:
    """Group the records by person, find each group's subject or make a new one, and unwrap the data key of
    every existing subject that receives a new identifier or a proof."""
    records = batch.records
    hashes = list({h for r in records for (_, _, h) in r.identifiers})
    for row in await conn.fetch(SELECT_SUBJECTS_OR_SUPPRESSED, hashes):
        if row["subject_id"] is None:
            raise SubjectErased()  # a later import may not bring an erased person back
        batch.known[row["lookup_hash"]] = row["subject_id"]
    known = batch.known
    batch.groups, existing = group_records([[h for (_, _, h) in r.identifiers] for r in records], known)

    subject_rows: list[tuple] = []
    new_ids = iter(ids.uuid4s(existing.count(None)))
    for group, subject in enumerate(existing):
        if subject is None:
            subject, data_key = next(new_ids), crypto.new_data_key()
            batch.data_keys[group] = data_key
            subject_rows.append((subject, keys.wrap(data_key, subject.bytes), keys.master_key_id))
        batch.subjects.append(subject)
    batch.created = frozenset(batch.data_keys)
    if subject_rows:
        await db.insert_rows(conn, "subjects", SUBJECT_COLUMNS, subject_rows)

    needs_key = {
        batch.groups[i]
        for i, r in enumerate(records)
        if batch.groups[i] not in batch.created
        and (r.proof is not None or any(h not in known for (_, _, h) in r.identifiers))
    }
    if needs_key:
        group_of = {batch.subjects[g]: g for g in needs_key}
        for row in await conn.fetch(SELECT_WRAPPED_KEYS, list(group_of)):
            batch.data_keys[group_of[row["subject_id"]]] = keys.unwrap(
                row["wrapped_key"], row["subject_id"].bytes
            )
        if needs_key - batch.data_keys.keys():
            raise SubjectErased()


async def _link_identifiers(conn: asyncpg.Connection, batch: _Batch) -> None:
    """Every identifier no subject held yet joins its group's subject: its look-up hash in clear, its value
    sealed under the subject's data key."""
    identifier_rows: dict[bytes, tuple] = {}
    for i, r in enumerate(batch.records):
        group = batch.groups[i]
        for kind, value, h in r.identifiers:
            if h not in batch.known and h not in identifier_rows:
                subject = batch.subjects[group]
                sealed = crypto.seal(batch.data_keys[group], value.encode(), _identifier_aad(subject, h))
                identifier_rows[h] = (subject, h, kind, sealed)
    if identifier_rows:
        new_hashes = sorted(identifier_rows)
        lookups = [(h, identifier_rows[h][0]) for h in new_hashes]
        await db.insert_rows(conn, "identifier_lookup", LOOKUP_COLUMNS, lookups)
        rows = [identifier_rows[h] for h in new_hashes]
        await db.insert_rows(conn, "subject_identifiers", IDENTIFIER_COLUMNS, rows)


async def _dedupe(conn: asyncpg.Connection, batch: _Batch) -> None:
    """A resent record (same subject, same content) is answered with the stored one, not stored twice; every
    other record gets its id and receipt."""
    groups, subjects = batch.groups, batch.subjects
    seen: dict[tuple[int, bytes], tuple[UUID, datetime]] = {}
    old_groups = {subjects[g]: g for g in set(groups) if g not in batch.created}
    if old_groups:
        fingerprints = list(
            {r.fingerprint for i, r in enumerate(batch.records) if groups[i] not in batch.created}
        )
        for row in await conn.fetch(SELECT_FINGERPRINTS, list(old_groups), fingerprints):
            seen[(old_groups[row["subject_id"]], row["fingerprint"])] = (row["record_id"], row["received_at"])
    record_ids = ids.uuid7s(len(batch.records))
    for i, r in enumerate(batch.records):
        subject = subjects[groups[i]]
        stored = seen.get((groups[i], r.fingerprint))
        if stored is not None:
            batch.receipts.append(
                RecordReceipt(id=stored[0], subject_id=subject, received_at=stored[1], duplicate=True)
            )
            continue
        record_id = record_ids[i]
        seen[(groups[i], r.fingerprint)] = (record_id, batch.received_at)
        batch.fresh.append((i, record_id))
        batch.receipts.append(
            RecordReceipt(id=record_id, subject_id=subject, received_at=batch.received_at, duplicate=False)
        )


async def _copy_records(conn: asyncpg.Connection, batch: _Batch) -> None:
    """The fresh records into the ledger, each proof sealed under its subject's key, their sources once each."""
    records, groups, subjects = batch.records, batch.groups, batch.subjects
    record_rows: list[tuple] = []
    for i, record_id in batch.fresh:
        r, group = records[i], groups[i]
        subject = subjects[group]
        proof = (
            crypto.seal(batch.data_keys[group], r.proof, _proof_aad(subject, record_id))
            if r.proof is not None
            else None
        )
        record_rows.append(
            (
                subject,
                record_id,
                r.purpose,
                r.status,
                r.collected_at,
                r.region,
                r.source_id,
                r.expires_at,
                proof,
                r.fingerprint,
            )
        )
    sources = {records[i].source_id: records[i].source for i, _ in batch.fresh}
    source_ids = sorted(sources)
    await conn.execute(INSERT_SOURCES, source_ids, [sources[i] for i in source_ids])
    record_rows.sort(key=lambda row: (row[0].bytes, row[-1]))
    await db.insert_rows(conn, "consent_records", RECORD_COLUMNS, record_rows)


async def _audit(conn: asyncpg.Connection, batch: _Batch) -> None:
    """One `consent.recorded` entry per stored record, pseudonymous."""
    encode = msgspec.json.encode
    records = batch.records
    entries = [
        (
            record_id,
            batch.received_at,
            "consent.recorded",
            batch.actor,
            batch.subjects[batch.groups[i]],
            records[i].status,
            encode(
                RecordPayload(
                    records[i].collected_at,
                    records[i].expires_at,
                    records[i].fingerprint,
                    records[i].purpose,
                    records[i].region,
                    records[i].source_id,
                )
            ),
        )
        for i, record_id in batch.fresh
    ]
    await audit_store.append(conn, entries)


async def _advance_state(conn: asyncpg.Connection, batch: _Batch) -> None:
    """Make each (subject, purpose)'s latest record its current state.

    One row per (subject, purpose): an upsert may not touch the same row twice. Within a batch the later
    collected_at wins; for equal times a refusal beats a grant (as a replay orders them), then the later
    position in the batch."""
    records = batch.records
    latest: dict[tuple[int, str], tuple[int, UUID]] = {}
    for i, record_id in batch.fresh:
        key = (batch.groups[i], records[i].purpose)
        held = latest.get(key)
        if held is None or _precedence(records[i]) >= _precedence(records[held[0]]):
            latest[key] = (i, record_id)
    new_rows, upserts = [], []
    for (group, purpose), (i, record_id) in latest.items():
        r = records[i]
        row = (
            batch.subjects[group],
            purpose,
            record_id,
            r.status,
            r.collected_at,
            r.expires_at,
            r.source.actor,
        )
        # No state can exist yet for a subject this transaction created.
        (new_rows if group in batch.created else upserts).append(row)
    batch.changed = new_rows
    if new_rows:
        await db.insert_rows(conn, "consent_state", STATE_COLUMNS, new_rows)
    if upserts:
        upserts.sort(key=lambda row: (row[0].bytes, row[1]))
        won = {tuple(r) for r in await conn.fetch(UPSERT_STATE, *map(list, zip(*upserts, strict=True)))}
        batch.changed = new_rows + [row for row in upserts if (row[0], row[1]) in won]


async def _announce(conn: asyncpg.Connection, batch: _Batch) -> None:
    """`consent.changed` in the outbox for every state that changed, in the same transaction."""
    if not batch.changed:
        return
    index_of = {record_id: i for (i, record_id) in batch.fresh}
    event_ids = ids.uuid4s(len(batch.changed))
    events = []
    for event_id, (subject, purpose, record_id, status, collected_at, expires_at, _) in zip(
        event_ids, batch.changed, strict=True
    ):
        r = batch.records[index_of[record_id]]
        data = ConsentChanged(
            subject, purpose, status, record_id, collected_at, expires_at, r.region, r.source
        )
        events.append(
            outbox.event("consent.changed", data, subject_id=subject, purpose=purpose, event_id=event_id)
        )
    await outbox.append(conn, events)


# Ties in collected_at within one arrival: withdrawn over denied over granted (SELECT_STATES_AT says the same).
STATUS_RANK = {"granted": 0, "denied": 1, "withdrawn": 2}


def _precedence(record: PreparedRecord) -> tuple[datetime, int]:
    return record.collected_at, STATUS_RANK[record.status]


async def identifiers(conn: asyncpg.Connection, keys: crypto.Keys, subject_id: UUID) -> list[tuple[str, str]]:
    """A subject's identifiers in clear, (kind, value): for its own access request only."""
    wrapped = await conn.fetchval("SELECT wrapped_key FROM subjects WHERE subject_id = $1", subject_id)
    if wrapped is None:
        return []
    data_key = _unwrap(keys, subject_id, wrapped)
    return [
        (
            row["kind"],
            crypto.unseal(
                data_key, row["value_enc"], _identifier_aad(subject_id, row["lookup_hash"])
            ).decode(),
        )
        for row in await conn.fetch(SELECT_IDENTIFIERS, subject_id)
    ]


async def erase(
    conn: asyncpg.Connection, subject_ids: list[UUID], hashes: list[bytes], request_id: UUID
) -> list[UUID]:
    """Crypto-shred subjects; suppress their identifiers' hashes and `hashes` (a request's, even if no subject
    held them). Returns the subjects erased now."""
    erased = [row["subject_id"] for row in await conn.fetch(ERASE_SUBJECTS, subject_ids)]
    dropped = [row["lookup_hash"] for row in await conn.fetch(DELETE_LOOKUPS, subject_ids)]
    await conn.execute(DELETE_IDENTIFIERS, subject_ids)
    await conn.execute(SUPPRESS_HASHES, sorted(set(dropped) | set(hashes)), request_id)
    return erased


async def subject_view(conn: asyncpg.Connection, keys: crypto.Keys, subject_id: UUID) -> SubjectView | None:
    subject = await conn.fetchrow(SELECT_SUBJECT, subject_id)
    if subject is None:
        return None
    identifiers = []
    if subject["wrapped_key"] is not None:
        data_key = _unwrap(keys, subject_id, subject["wrapped_key"])
        for row in await conn.fetch(SELECT_IDENTIFIERS, subject_id):
            value = crypto.unseal(
                data_key, row["value_enc"], _identifier_aad(subject_id, row["lookup_hash"])
            ).decode()
            identifiers.append(MaskedIdentifier(type=row["kind"], masked=mask(row["kind"], value)))
    consents = [
        PurposeState(**{**dict(row), "source": msgspec.convert(row["source"], Source)})
        for row in await conn.fetch(SELECT_STATE, subject_id)
    ]
    return SubjectView(
        subject_id=subject_id, created_at=subject["created_at"], identifiers=identifiers, consents=consents
    )


async def history(
    conn: asyncpg.Connection,
    keys: crypto.Keys,
    subject_id: UUID,
    purpose: str | None,
    cursor: tuple[datetime, UUID] | None,
    limit: int,
) -> ConsentHistory | None:
    subject = await conn.fetchrow(SELECT_SUBJECT, subject_id)
    if subject is None:
        return None
    after_at, after_id = cursor or (None, None)
    rows = await conn.fetch(SELECT_HISTORY, subject_id, purpose, after_at, after_id, limit + 1)
    data_key = (
        _unwrap(keys, subject_id, subject["wrapped_key"]) if subject["wrapped_key"] is not None else None
    )
    out = []
    for row in rows[:limit]:
        proof = None
        if row["proof_enc"] is not None and data_key is not None:
            proof = msgspec.json.decode(
                crypto.unseal(data_key, row["proof_enc"], _proof_aad(subject_id, row["record_id"]))
            )
        out.append(
            ConsentRecordOut(
                id=row["record_id"],
                purpose=row["purpose"],
                status=row["status"],
                collected_at=row["collected_at"],
                received_at=row["received_at"],
                region=row["region"],
                source=msgspec.convert(row["source"], Source),
                expires_at=row["expires_at"],
                proof=proof,
            )
        )
    next_cursor = (
        cursors.encode(rows[limit - 1]["collected_at"], rows[limit - 1]["record_id"])
        if len(rows) > limit
        else None
    )
    return ConsentHistory(records=out, next_cursor=next_cursor)


def _unwrap(keys: crypto.Keys, subject_id: UUID, wrapped: bytes) -> bytes:
    return keys.unwrap(wrapped, subject_id.bytes)
