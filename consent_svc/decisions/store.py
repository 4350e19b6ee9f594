"""SQL of decisions, and functions that run it on a connection the caller holds."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import msgspec

from consent_svc.decisions.engine import ConsentState, Context, explain
from consent_svc.decisions.types import PolicyRef, RecordBasis, RecordedDecision

# One row per (check, identifier or subject id, purpose needed); the check's index comes back with it.
SELECT_STATES = """
SELECT t.i, coalesce(l.subject_id, t.s) AS subject_id, t.p AS purpose,
       cs.record_id, cs.status, cs.collected_at, cs.expires_at, cs.actor
FROM unnest($1::int4[], $2::bytea[], $3::uuid[], $4::text[]) AS t (i, h, s, p)
LEFT JOIN identifier_lookup l ON l.lookup_hash = t.h
LEFT JOIN consent_state cs ON cs.subject_id = coalesce(l.subject_id, t.s) AND cs.purpose = t.p
"""
# The time and the policy version are the same for every row of a round trip: scalars, not arrays.
INSERT_DECISIONS = """
INSERT INTO decisions (
    decision_id, decided_at, subject_id, lookup_hash, purpose, region, gpc, age, sensitive, existing_customer,
    allowed, reason, regime, regime_version, record_id, policy_version, api_key_id
)
SELECT d, $2, s, h, p, r, g, a, se, ec, al, re, rg, rv, rec, $16, k
FROM unnest(
    $1::uuid[], $3::uuid[], $4::bytea[], $5::text[], $6::text[], $7::bool[], $8::int2[], $9::bool[],
    $10::bool[], $11::bool[], $12::text[], $13::text[], $14::text[], $15::uuid[], $17::text[]
) AS t (d, s, h, p, r, g, a, se, ec, al, re, rg, rv, rec, k)
"""
SELECT_SUBJECT_BY_HASHES = """
SELECT subject_id FROM identifier_lookup WHERE lookup_hash = ANY($1::bytea[]) LIMIT 1
"""
# The state at a past moment, rebuilt from the ledger: the latest record per purpose collected by then; with
# $4 (as known), only among the records the service had received by then.
SELECT_STATES_AT = """
SELECT DISTINCT ON (cr.purpose)
       cr.purpose, cr.record_id, cr.status, cr.collected_at, cr.expires_at,
       coalesce(src.source ->> 'actor', 'subject') AS actor
FROM consent_records cr
JOIN consent_sources src ON src.source_id = cr.source_id
WHERE cr.subject_id = $1 AND cr.purpose = ANY($2::text[]) AND cr.collected_at <= $3
  AND (NOT $4 OR cr.received_at <= $3)
ORDER BY cr.purpose, cr.collected_at DESC, cr.received_at DESC
"""
SELECT_DECISION = """
SELECT d.decision_id, d.decided_at, d.subject_id, d.purpose, d.region, d.gpc, d.age, d.sensitive,
       d.existing_customer, d.allowed, d.reason, d.regime, d.regime_version, d.record_id, d.policy_version,
       d.api_key_id, cr.status AS record_status, cr.collected_at AS record_collected_at,
       cr.received_at AS record_received_at, cr.region AS record_region, src.source AS record_source
FROM decisions d
LEFT JOIN consent_records cr ON cr.subject_id = d.subject_id AND cr.record_id = d.record_id
LEFT JOIN consent_sources src ON src.source_id = cr.source_id
WHERE d.decision_id = $1 AND d.decided_at = $2
"""


class CheckRow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A validated check, ready for the database: identifiers already reduced to look-up hashes."""

    hashes: list[bytes]
    subject_id: UUID | None
    purpose: str
    region: str
    context: Context
    api_key_id: str


class DecisionRow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    decision_id: UUID
    subject_id: UUID | None
    lookup_hash: bytes | None
    allowed: bool
    reason: str
    regime: str
    regime_version: str
    record_id: UUID | None


async def current_states(
    conn: asyncpg.Connection, checks: Sequence[CheckRow], needed: Sequence[tuple[str, ...]]
) -> list[tuple[UUID | None, dict[str, ConsentState]]]:
    """Each check's subject (None: unknown to the ledger) and its current consent for the purposes needed.

    With several identifiers, the first that names a subject decides which subject it is."""
    index, hashes, subject_ids, purposes = [], [], [], []
    for i, check in enumerate(checks):
        for purpose in needed[i]:
            if check.subject_id is not None:
                (
                    index.append(i),
                    hashes.append(None),
                    subject_ids.append(check.subject_id),
                    purposes.append(purpose),
                )
            for h in check.hashes:
                index.append(i), hashes.append(h), subject_ids.append(None), purposes.append(purpose)
    out: list[tuple[UUID | None, dict[str, ConsentState]]] = [(None, {}) for _ in checks]
    for row in await conn.fetch(SELECT_STATES, index, hashes, subject_ids, purposes):
        i, subject_id = row[0], row[1]
        if subject_id is None:
            continue
        held, states = out[i]
        if held is None:
            out[i] = (subject_id, states)
        elif held != subject_id:
            continue
        if row[3] is not None:
            states[row[2]] = ConsentState(row[3], row[4], row[5], row[6], row[7])
    return out


async def insert_decisions(
    conn: asyncpg.Connection,
    decided_at: datetime,
    policy_version: str,
    checks: Sequence[CheckRow],
    rows: Sequence[DecisionRow],
) -> None:
    await conn.execute(
        INSERT_DECISIONS,
        [r.decision_id for r in rows],
        decided_at,
        [r.subject_id for r in rows],
        [r.lookup_hash for r in rows],
        [c.purpose for c in checks],
        [c.region for c in checks],
        [c.context.gpc for c in checks],
        [c.context.age for c in checks],
        [c.context.sensitive for c in checks],
        [c.context.existing_customer for c in checks],
        [r.allowed for r in rows],
        [r.reason for r in rows],
        [r.regime for r in rows],
        [r.regime_version for r in rows],
        [r.record_id for r in rows],
        policy_version,
        [c.api_key_id for c in checks],
    )


async def subject_of(conn: asyncpg.Connection, hashes: list[bytes]) -> UUID | None:
    return await conn.fetchval(SELECT_SUBJECT_BY_HASHES, hashes)


async def states_at(
    conn: asyncpg.Connection, subject_id: UUID, purposes: Sequence[str], at: datetime, as_known: bool
) -> dict[str, ConsentState]:
    rows = await conn.fetch(SELECT_STATES_AT, subject_id, list(purposes), at, as_known)
    return {row[0]: ConsentState(row[1], row[2], row[3], row[4], row[5]) for row in rows}


async def fetch_decision(
    conn: asyncpg.Connection, decision_id: UUID, decided_at: datetime
) -> RecordedDecision | None:
    row = await conn.fetchrow(SELECT_DECISION, decision_id, decided_at)
    if row is None:
        return None
    basis = None
    if row["record_status"] is not None:
        basis = RecordBasis(
            id=row["record_id"],
            status=row["record_status"],
            collected_at=row["record_collected_at"],
            received_at=row["record_received_at"],
            region=row["record_region"],
            source=row["record_source"],
        )
    return RecordedDecision(
        decision_id=row["decision_id"],
        decided_at=row["decided_at"],
        subject_id=row["subject_id"],
        purpose=row["purpose"],
        region=row["region"],
        context=Context(row["gpc"], row["age"], row["sensitive"], row["existing_customer"]),
        allowed=row["allowed"],
        reason=row["reason"],
        explanation=explain(row["allowed"], row["reason"], row["regime"], row["purpose"], row["region"]),
        policy=PolicyRef(row["regime"], row["policy_version"], row["regime_version"]),
        consent_record=basis,
        api_key_id=row["api_key_id"],
    )


def ms_time(unix_ms: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=unix_ms)
