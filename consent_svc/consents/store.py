"""SQL of the ledger, and functions that run it on a connection the caller holds (in its transaction)."""

from __future__ import annotations

import base64
import os
import time
from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import crypto
from consent_svc.consents.identity import group_records, mask
from consent_svc.consents.types import (
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
SELECT lookup_hash, subject_id FROM subject_identifiers WHERE lookup_hash = ANY($1::bytea[])
"""
SELECT_WRAPPED_KEYS = """
SELECT subject_id, wrapped_key FROM subjects WHERE subject_id = ANY($1::uuid[]) AND wrapped_key IS NOT NULL
"""
INSERT_SUBJECTS = """
INSERT INTO subjects (subject_id, wrapped_key, master_key_id, created_at)
SELECT s, k, $3, $4 FROM unnest($1::uuid[], $2::bytea[]) AS t (s, k)
"""
INSERT_IDENTIFIERS = """
INSERT INTO subject_identifiers (subject_id, lookup_hash, kind, value_enc, created_at)
SELECT s, h, k, v, $5 FROM unnest($1::uuid[], $2::bytea[], $3::text[], $4::bytea[]) AS t (s, h, k, v)
ON CONFLICT DO NOTHING
"""
SELECT_FINGERPRINTS = """
SELECT subject_id, fingerprint, record_id, received_at
FROM consent_records
WHERE subject_id = ANY($1::uuid[]) AND fingerprint = ANY($2::bytea[])
"""
INSERT_RECORDS = """
INSERT INTO consent_records (subject_id, record_id, purpose, status, collected_at, received_at, region, source,
                             expires_at, proof_enc, fingerprint)
SELECT s, r, p, st, c, $11, rg, src, e, pr, f
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::jsonb[],
            $8::timestamptz[], $9::bytea[], $10::bytea[]) AS t (s, r, p, st, c, rg, src, e, pr, f)
ON CONFLICT DO NOTHING
"""
# A record changes the current state only if it was collected later than the one there (ties: received
# later): an older record arriving late goes into the history and nowhere else.
UPSERT_STATE = """
INSERT INTO consent_state AS cur (subject_id, purpose, record_id, status, collected_at, received_at, region,
                                  source, expires_at)
SELECT s, p, r, st, c, $9, rg, src, e
FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::timestamptz[], $6::text[], $7::jsonb[],
            $8::timestamptz[]) AS t (s, p, r, st, c, rg, src, e)
ON CONFLICT (subject_id, purpose) DO UPDATE
SET record_id = EXCLUDED.record_id, status = EXCLUDED.status, collected_at = EXCLUDED.collected_at,
    received_at = EXCLUDED.received_at, region = EXCLUDED.region, source = EXCLUDED.source,
    expires_at = EXCLUDED.expires_at
WHERE (EXCLUDED.collected_at, EXCLUDED.received_at) > (cur.collected_at, cur.received_at)
"""
SELECT_SUBJECT = "SELECT subject_id, wrapped_key, created_at FROM subjects WHERE subject_id = $1"
SELECT_IDENTIFIERS = """
SELECT lookup_hash, kind, value_enc FROM subject_identifiers WHERE subject_id = $1 ORDER BY created_at, kind
"""
SELECT_STATE = """
SELECT purpose, status, record_id, collected_at, received_at, region, source, expires_at
FROM consent_state WHERE subject_id = $1 ORDER BY purpose
"""
SELECT_HISTORY = """
SELECT record_id, purpose, status, collected_at, received_at, region, source, expires_at, proof_enc
FROM consent_records
WHERE subject_id = $1
  AND ($2::text IS NULL OR purpose = $2)
  AND ($3::timestamptz IS NULL OR (collected_at, record_id) < ($3, $4::uuid))
ORDER BY collected_at DESC, record_id DESC
LIMIT $5
"""


class RaceLost(Exception):
    """A concurrent transaction linked the same new identifier or stored the same record first: retry."""


class PreparedRecord(msgspec.Struct, frozen=True):
    """A validated record, identifiers normalized and hashed; proof already JSON."""

    identifiers: list[tuple[str, str, bytes]]  # (kind, normalized value, look-up hash)
    purpose: str
    status: Status
    collected_at: datetime
    region: str
    source: Source
    expires_at: datetime | None
    proof: bytes | None
    fingerprint: bytes


def uuid7() -> UUID:
    """Time-ordered UUID (RFC 9562 v7): new rows land at the right edge of the index."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    return UUID(int=(ms << 80) | (0x7 << 76) | ((rand >> 62) & 0xFFF) << 64 | (0b10 << 62) | (rand & (2**62 - 1)))


def _identifier_aad(subject_id: UUID, lookup_hash: bytes) -> bytes:
    return subject_id.bytes + b"identifier" + lookup_hash


def _proof_aad(subject_id: UUID, record_id: UUID) -> bytes:
    return subject_id.bytes + b"proof" + record_id.bytes


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


async def subjects_by_hash(conn: asyncpg.Connection, hashes: list[bytes]) -> dict[bytes, UUID]:
    return {row["lookup_hash"]: row["subject_id"] for row in await conn.fetch(SELECT_SUBJECTS_BY_HASH, hashes)}


async def insert_records(
    conn: asyncpg.Connection, keys: crypto.Keys, records: list[PreparedRecord], received_at: datetime
) -> list[RecordReceipt]:
    """Resolve subjects, link new identifiers, append the records, advance the current state.

    Raises SubjectConflict (from identity) when a record's identifiers belong to two subjects, and
    RaceLost when a concurrent transaction won a unique key: the caller retries the transaction.
    """
    all_hashes = list({h for r in records for (_, _, h) in r.identifiers})
    known = await subjects_by_hash(conn, all_hashes)
    groups, existing = group_records([[h for (_, _, h) in r.identifiers] for r in records], known)

    data_keys: dict[UUID, bytes] = {}
    new_subjects: list[UUID] = []
    new_wrapped: list[bytes] = []
    subject_of_group: list[UUID] = []
    for subject in existing:
        if subject is None:
            subject, key = UUID(bytes=os.urandom(16), version=4), crypto.new_data_key()
            data_keys[subject] = key
            new_subjects.append(subject)
            new_wrapped.append(crypto.seal(keys.master_key, key, subject.bytes))
        subject_of_group.append(subject)
    subject_ids = [subject_of_group[g] for g in groups]

    # Existing subjects that receive a new identifier or a proof need their data key.
    needs_key = {
        subject_ids[i]
        for i, r in enumerate(records)
        if subject_ids[i] not in data_keys and (r.proof is not None or any(h not in known for (_, _, h) in r.identifiers))
    }
    if needs_key:
        for row in await conn.fetch(SELECT_WRAPPED_KEYS, list(needs_key)):
            data_keys[row["subject_id"]] = _unwrap(keys, row["subject_id"], row["wrapped_key"])

    ident_rows: dict[bytes, tuple[UUID, str, bytes]] = {}
    for i, r in enumerate(records):
        subject = subject_ids[i]
        for kind, value, h in r.identifiers:
            if h not in known and h not in ident_rows:
                ident_rows[h] = (subject, kind, crypto.seal(data_keys[subject], value.encode(), _identifier_aad(subject, h)))

    if new_subjects:
        await conn.execute(INSERT_SUBJECTS, new_subjects, new_wrapped, keys.master_key_id, received_at)
    if ident_rows:
        hashes = list(ident_rows)
        rows = [ident_rows[h] for h in hashes]
        status = await conn.execute(
            INSERT_IDENTIFIERS, [r[0] for r in rows], hashes, [r[1] for r in rows], [r[2] for r in rows], received_at
        )
        if _count(status) != len(hashes):
            raise RaceLost("identifier linked concurrently")

    # Resent records (same subject, same content) are answered with the stored record, not stored twice.
    seen: dict[tuple[UUID, bytes], tuple[UUID, datetime]] = {}
    created = set(new_subjects)
    old_subjects = list({s for s in subject_ids if s not in created})
    if old_subjects:
        fingerprints = list({r.fingerprint for i, r in enumerate(records) if subject_ids[i] not in created})
        for row in await conn.fetch(SELECT_FINGERPRINTS, old_subjects, fingerprints):
            seen[(row["subject_id"], row["fingerprint"])] = (row["record_id"], row["received_at"])

    receipts: list[RecordReceipt] = []
    fresh: list[tuple[int, UUID]] = []
    for i, r in enumerate(records):
        subject = subject_ids[i]
        stored = seen.get((subject, r.fingerprint))
        if stored is not None:
            receipts.append(RecordReceipt(id=stored[0], subject_id=subject, received_at=stored[1], duplicate=True))
            continue
        record_id = uuid7()
        seen[(subject, r.fingerprint)] = (record_id, received_at)
        fresh.append((i, record_id))
        receipts.append(RecordReceipt(id=record_id, subject_id=subject, received_at=received_at, duplicate=False))

    if fresh:
        cols: list[list] = [[] for _ in range(10)]
        for i, record_id in fresh:
            r, subject = records[i], subject_ids[i]
            proof = None
            if r.proof is not None:
                proof = crypto.seal(data_keys[subject], r.proof, _proof_aad(subject, record_id))
            for col, value in zip(
                cols,
                (subject, record_id, r.purpose, r.status, r.collected_at, r.region, r.source, r.expires_at, proof, r.fingerprint),
            ):
                col.append(value)
        status = await conn.execute(INSERT_RECORDS, *cols, received_at)
        if _count(status) != len(fresh):
            raise RaceLost("record stored concurrently")
        await _advance_state(conn, records, subject_ids, fresh, received_at)
    return receipts


async def _advance_state(
    conn: asyncpg.Connection,
    records: list[PreparedRecord],
    subject_ids: list[UUID],
    fresh: list[tuple[int, UUID]],
    received_at: datetime,
) -> None:
    # One row per (subject, purpose): an upsert may not touch the same row twice. Within a batch the
    # later collected_at wins, and for equal times the later position in the batch.
    latest: dict[tuple[UUID, str], tuple[int, UUID]] = {}
    for i, record_id in fresh:
        key = (subject_ids[i], records[i].purpose)
        held = latest.get(key)
        if held is None or records[i].collected_at >= records[held[0]].collected_at:
            latest[key] = (i, record_id)
    cols: list[list] = [[] for _ in range(8)]
    for (subject, purpose), (i, record_id) in latest.items():
        r = records[i]
        for col, value in zip(cols, (subject, purpose, record_id, r.status, r.collected_at, r.region, r.source, r.expires_at)):
            col.append(value)
    await conn.execute(UPSERT_STATE, *cols, received_at)


async def subject_view(conn: asyncpg.Connection, keys: crypto.Keys, subject_id: UUID) -> SubjectView | None:
    subject = await conn.fetchrow(SELECT_SUBJECT, subject_id)
    if subject is None:
        return None
    identifiers = []
    if subject["wrapped_key"] is not None:
        data_key = _unwrap(keys, subject_id, subject["wrapped_key"])
        for row in await conn.fetch(SELECT_IDENTIFIERS, subject_id):
            value = crypto.unseal(data_key, row["value_enc"], _identifier_aad(subject_id, row["lookup_hash"])).decode()
            identifiers.append(MaskedIdentifier(type=row["kind"], masked=mask(row["kind"], value)))
    consents = [
        PurposeState(**{**dict(row), "source": msgspec.convert(row["source"], Source)})
        for row in await conn.fetch(SELECT_STATE, subject_id)
    ]
    return SubjectView(subject_id=subject_id, created_at=subject["created_at"], identifiers=identifiers, consents=consents)


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
    data_key = _unwrap(keys, subject_id, subject["wrapped_key"]) if subject["wrapped_key"] is not None else None
    out = []
    for row in rows[:limit]:
        proof = None
        if row["proof_enc"] is not None and data_key is not None:
            proof = msgspec.json.decode(crypto.unseal(data_key, row["proof_enc"], _proof_aad(subject_id, row["record_id"])))
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
    next_cursor = encode_cursor(rows[limit - 1]["collected_at"], rows[limit - 1]["record_id"]) if len(rows) > limit else None
    return ConsentHistory(records=out, next_cursor=next_cursor)


def _unwrap(keys: crypto.Keys, subject_id: UUID, wrapped: bytes) -> bytes:
    return crypto.unseal(keys.master_key, wrapped, subject_id.bytes)


def encode_cursor(at: datetime, record_id: UUID) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([at, record_id])).decode().rstrip("=")


def decode_cursor(text: str) -> tuple[datetime, UUID]:
    """ValueError on anything that is not a cursor we issued."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at, record_id = msgspec.json.decode(raw, type=tuple[datetime, UUID])
    except (ValueError, msgspec.DecodeError) as exc:
        raise ValueError("not a valid cursor") from exc
    if at.tzinfo is None:
        raise ValueError("not a valid cursor")
    return at, record_id
