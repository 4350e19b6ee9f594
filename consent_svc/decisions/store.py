"""SQL of decisions, and functions that run it on a connection the caller holds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import ids
from consent_svc.audit import store as audit_store
from consent_svc.decisions.engine import ConsentState, Context, explain
from consent_svc.decisions.types import Check, PolicyRef, RecordBasis, RecordedDecision

MAX_UNIX_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z

# One row per (identifier or subject id, purpose needed), found again by its number n. Keys travel as one
# bytea of fixed-width slices and purposes as one byte each (an index into $3): asyncpg encodes a 10,000
# element array at ~1 us per element, which made this read 25 ms; as blobs it takes 4 ms (this machine).
# $4 has a byte per row, 1 where the check carries a GPC signal: only then is a grant looked at further, for
# a GPC refusal recorded before it (CCPA regs 7025(c)(3), engine.ConsentState.regranted_after_gpc; the
# function is in migrations/0009_gpc_regrant.sql).
SELECT_STATES_BY_HASH = """
SELECT t.n, l.subject_id, cs.record_id, cs.status, cs.collected_at, cs.expires_at, cs.actor,
       CASE WHEN cs.status = 'granted' AND get_byte($4::bytea, t.n - 1) = 1
            THEN granted_after_gpc_refusal(cs.subject_id, cs.purpose, cs.collected_at, NULL) ELSE false END
FROM generate_series(1, length($2::bytea)) AS t (n)
JOIN identifier_lookup l ON l.lookup_hash = substring($1::bytea FROM t.n * 32 - 31 FOR 32)
LEFT JOIN consent_state cs
  ON cs.subject_id = l.subject_id AND cs.purpose = ($3::text[])[get_byte($2::bytea, t.n - 1) + 1]
ORDER BY t.n
"""
SELECT_STATES_BY_ID = """
SELECT t.n, k.s, cs.record_id, cs.status, cs.collected_at, cs.expires_at, cs.actor,
       CASE WHEN cs.status = 'granted' AND get_byte($4::bytea, t.n - 1) = 1
            THEN granted_after_gpc_refusal(cs.subject_id, cs.purpose, cs.collected_at, NULL) ELSE false END
FROM generate_series(1, length($2::bytea)) AS t (n)
CROSS JOIN LATERAL (
    SELECT encode(substring($1::bytea FROM t.n * 16 - 15 FOR 16), 'hex')::uuid,
           ($3::text[])[get_byte($2::bytea, t.n - 1) + 1]
) AS k (s, p)
LEFT JOIN consent_state cs ON cs.subject_id = k.s AND cs.purpose = k.p
ORDER BY t.n
"""
# Any one look-up hash a subject already has: the service's own records name their subject by it.
SELECT_A_HASH_PER_SUBJECT = """
SELECT DISTINCT ON (subject_id) subject_id, lookup_hash
FROM subject_identifiers
WHERE subject_id = ANY($1::uuid[])
ORDER BY subject_id, created_at
"""
# Subjects whose current grant of a purpose was given after a GPC signal had already refused it: consent
# asked for and given after the conflict (CCPA regs 7025(c)(3)), which a new signal does not overwrite.
SELECT_REGRANTED_AFTER_GPC = """
SELECT cs.subject_id
FROM unnest($1::uuid[], $2::text[]) AS t (s, p)
JOIN consent_state cs ON cs.subject_id = t.s AND cs.purpose = t.p AND cs.status = 'granted'
WHERE granted_after_gpc_refusal(cs.subject_id, cs.purpose, cs.collected_at, NULL)
"""
# The (subject, purpose) pairs already refused: a GPC signal adds nothing to them.
SELECT_REFUSED = """
SELECT cs.subject_id, cs.purpose
FROM unnest($1::uuid[], $2::text[]) AS t (s, p)
JOIN consent_state cs ON cs.subject_id = t.s AND cs.purpose = t.p AND cs.status IN ('denied', 'withdrawn')
"""
SELECT_SUBJECTS_BY_HASHES = """
SELECT DISTINCT subject_id FROM identifier_lookup WHERE lookup_hash = ANY($1::bytea[])
"""
# The state at a past moment, rebuilt from the ledger: the latest record per purpose collected by then; with
# $4 (as known), only among the records the service had received by then. A grant says whether a GPC refusal
# was recorded before it, as the live read does.
SELECT_STATES_AT = """
SELECT DISTINCT ON (cr.purpose)
       cr.purpose, cr.record_id, cr.status, cr.collected_at, cr.expires_at,
       coalesce(src.source ->> 'actor', 'subject') AS actor,
       cr.status = 'granted' AND granted_after_gpc_refusal(
           cr.subject_id, cr.purpose, cr.collected_at, CASE WHEN $4 THEN $3::timestamptz END
       ) AS regranted_after_gpc
FROM consent_records cr
JOIN consent_sources src ON src.source_id = cr.source_id
WHERE cr.subject_id = $1 AND cr.purpose = ANY($2::text[]) AND cr.collected_at <= $3
  AND (NOT $4 OR cr.received_at <= $3)
ORDER BY cr.purpose, cr.collected_at DESC, cr.received_at DESC,
         CASE cr.status WHEN 'withdrawn' THEN 2 WHEN 'denied' THEN 1 ELSE 0 END DESC
"""
# A decision is an audit entry: its id is the entry's, stamped with its time (so the look-up prunes to one
# partition); the consent record it rested on comes from the ledger.
SELECT_DECISION = """
SELECT e.entry_id, e.at, e.subject_id, e.outcome, e.actor, e.payload,
       cr.status AS record_status, cr.collected_at AS record_collected_at,
       cr.received_at AS record_received_at, cr.region AS record_region, src.source AS record_source
FROM audit_log e
LEFT JOIN consent_records cr
  ON cr.subject_id = e.subject_id AND cr.record_id = (e.payload ->> 'record_id')::uuid
LEFT JOIN consent_sources src ON src.source_id = cr.source_id
WHERE e.at = $2 AND e.entry_id = $1 AND e.action = 'decision.made'
"""


class DecisionPayload(msgspec.Struct, frozen=True, gc=False):
    """A decision's audit payload. Fields in sorted order: encoded as is, it is the log's canonical form."""

    age: int | None
    existing_customer: bool
    gpc: bool
    lookup_hash: bytes | None
    """For a subject the ledger does not know: its first identifier's keyed look-up hash."""
    policy_version: str
    purpose: str
    reason: str
    record_id: UUID | None
    regime: str
    regime_version: str
    region: str
    sensitive: bool


async def read_states(
    conn: asyncpg.Connection, checks: Sequence[Check], needed: Sequence[tuple[str, ...]]
) -> None:
    """Each check's subject and its current consent for the purposes `needed` (by check); a check whose
    identifiers name two different subjects is marked in conflict (the ledger never merges subjects, so it
    has no answer: deciding by one of them could sidestep the other's refusal)."""
    purpose_list = sorted({p for purposes in needed for p in purposes})
    purpose_number = {p: n for n, p in enumerate(purpose_list)}
    # per key: check index, key bytes, purpose number, GPC flag
    by_hash: tuple[list, list, bytearray, bytearray] = ([], [], bytearray(), bytearray())
    by_id: tuple[list, list, bytearray, bytearray] = ([], [], bytearray(), bytearray())
    for i, check in enumerate(checks):
        row = check.row
        gpc = 1 if row.context.gpc else 0
        for purpose in needed[i]:
            number = purpose_number[purpose]
            if row.subject_id is not None:
                (
                    by_id[0].append(i),
                    by_id[1].append(row.subject_id.bytes),
                    by_id[2].append(number),
                    by_id[3].append(gpc),
                )
            for h in row.hashes:
                by_hash[0].append(i), by_hash[1].append(h), by_hash[2].append(number), by_hash[3].append(gpc)
    seen: list[bool] = [False] * len(checks)
    for query, (index, keys, numbers, flags) in (
        (SELECT_STATES_BY_ID, by_id),
        (SELECT_STATES_BY_HASH, by_hash),
    ):
        if not index:
            continue
        rows = await conn.fetch(query, b"".join(keys), bytes(numbers), purpose_list, bytes(flags))
        for n, subject_id, *state in rows:
            i = index[n - 1]
            check = checks[i]
            if not seen[i]:
                seen[i], check.subject_id = True, subject_id
            elif check.subject_id != subject_id:
                check.conflict = True
                continue
            if state[0] is not None:
                check.states[purpose_list[numbers[n - 1]]] = ConsentState(*state)


def decision_entries(decided_at: datetime, policy_version: str, checks: Sequence[Check]) -> list[tuple]:
    """The decided checks as audit entries (audit_store.append): pseudonymous, the subject id or for an unknown
    subject its first identifier's look-up hash."""
    encode = msgspec.json.encode
    entries = []
    for check in checks:
        c, d, subject_id = check.row, check.decision, check.subject_id
        if d is None:
            continue
        entries.append(
            (
                d.decision_id,
                decided_at,
                "decision.made",
                c.api_key_id,
                subject_id,
                "allowed" if d.allowed else "denied",
                encode(
                    DecisionPayload(
                        c.context.age,
                        c.context.existing_customer,
                        c.context.gpc,
                        c.hashes[0] if subject_id is None and c.hashes else None,
                        policy_version,
                        c.purpose,
                        d.reason,
                        d.consent_record_id,
                        d.policy.regime,
                        d.policy.regime_version,
                        c.region,
                        c.context.sensitive,
                    )
                ),
            )
        )
    return entries


async def a_hash_per_subject(conn: asyncpg.Connection, subject_ids: list[UUID]) -> dict[UUID, bytes]:
    return {row[0]: row[1] for row in await conn.fetch(SELECT_A_HASH_PER_SUBJECT, subject_ids)}


async def regranted_after_gpc(conn: asyncpg.Connection, pairs: list[tuple[UUID, str]]) -> set[UUID]:
    subjects, purposes = zip(*pairs, strict=True) if pairs else ((), ())
    return {row[0] for row in await conn.fetch(SELECT_REGRANTED_AFTER_GPC, list(subjects), list(purposes))}


async def refused(conn: asyncpg.Connection, pairs: list[tuple[UUID, str]]) -> set[tuple[UUID, str]]:
    subjects, purposes = zip(*pairs, strict=True) if pairs else ((), ())
    return {(row[0], row[1]) for row in await conn.fetch(SELECT_REFUSED, list(subjects), list(purposes))}


async def subjects_of(conn: asyncpg.Connection, hashes: list[bytes]) -> list[UUID]:
    return [row[0] for row in await conn.fetch(SELECT_SUBJECTS_BY_HASHES, hashes)]


async def states_at(
    conn: asyncpg.Connection, subject_id: UUID, purposes: Sequence[str], at: datetime, as_known: bool
) -> dict[str, ConsentState]:
    rows = await conn.fetch(SELECT_STATES_AT, subject_id, list(purposes), at, as_known)
    return {row[0]: ConsentState(*row[1:]) for row in rows}


async def recorded(conn: asyncpg.Connection, decision_id: UUID) -> RecordedDecision | None:
    """A recorded decision, found in its month's partition by the time its id is stamped with."""
    # Decision ids are UUIDv7 stamped with decided_at: anything else (or a stamp past datetime's range) names
    # no decision.
    if decision_id.version != 7 or ids.uuid7_ms(decision_id) >= MAX_UNIX_MS:
        return None
    row = await conn.fetchrow(SELECT_DECISION, decision_id, audit_store.ms_time(ids.uuid7_ms(decision_id)))
    if row is None:
        return None
    p = msgspec.json.decode(row["payload"], type=DecisionPayload)
    basis = None
    if row["record_status"] is not None:
        basis = RecordBasis(
            id=p.record_id,
            status=row["record_status"],
            collected_at=row["record_collected_at"],
            received_at=row["record_received_at"],
            region=row["record_region"],
            source=row["record_source"],
        )
    allowed = row["outcome"] == "allowed"
    return RecordedDecision(
        decision_id=row["entry_id"],
        decided_at=row["at"],
        subject_id=row["subject_id"],
        purpose=p.purpose,
        region=p.region,
        context=Context(p.gpc, p.age, p.sensitive, p.existing_customer),
        allowed=allowed,
        reason=p.reason,
        explanation=explain(allowed, p.reason, p.regime, p.purpose, p.region),
        policy=PolicyRef(p.regime, p.policy_version, p.regime_version),
        consent_record=basis,
        api_key_id=row["actor"],
    )
