"""Replays: what the answer would have been at a past moment, rebuilt from the ledger and decided by the same
engine as live checks, under the policy version in force then (or one asked for). Not a live decision, but
recorded like every action: who asked what about whom, and when."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import asyncpg

from consent_svc.audit import store as audit_store
from consent_svc.consents.ledger import RecordRules
from consent_svc.decisions import checks, store
from consent_svc.decisions.engine import Rulebook
from consent_svc.decisions.live import two_subjects
from consent_svc.decisions.types import PolicyRef, ReplayedDecision, ReplayRequest
from consent_svc.exceptions import Absent, Invalid, out_of_range
from consent_svc.policies import store as policy_store
from consent_svc.policies.load import build_policies


async def replay(
    pool: asyncpg.Pool, current: Rulebook, rules: RecordRules, request: ReplayRequest, api_key_id: str
) -> ReplayedDecision:
    if errors := out_of_range([("at", request.at)]):
        raise Invalid(errors=errors)
    at = request.at.astimezone(UTC)  # dated rules start on UTC days, as for live checks
    row = checks.prepare(request, rules, api_key_id)
    async with pool.acquire() as conn:
        rulebook = await _rulebook_for(conn, current, request.policy_version, at)
        subject_id = row.subject_id
        if subject_id is None and row.hashes:
            found = await store.subjects_of(conn, row.hashes)
            if len(found) > 1:
                raise two_subjects([])
            subject_id = found[0] if found else None
        needed = rulebook.purposes_needed(row.purpose, row.context)
        held = await store.states_at(conn, subject_id, needed, at, request.as_known) if subject_id else {}
    if row.purpose not in rulebook.policies.purpose_ids:
        raise Invalid(f"purpose: `{row.purpose}` is not in policy version {rulebook.version}")
    outcome = rulebook.decide(row.region, row.purpose, row.context, held, at)
    body = {
        "as_known": request.as_known,
        "at": at,
        "context": row.context,
        "lookup_hash": row.hashes[0] if subject_id is None and row.hashes else None,
        "policy_version": rulebook.version,
        "purpose": row.purpose,
        "reason": outcome.reason,
        "record_id": outcome.record_id,
        "regime": outcome.regime,
        "region": row.region,
    }
    outcome_word = "allowed" if outcome.allowed else "denied"
    async with pool.acquire() as conn:
        entry = audit_store.entry("decision.replayed", api_key_id, body, subject_id, outcome_word)
        await audit_store.append(conn, [entry])
    return ReplayedDecision(
        allowed=outcome.allowed,
        reason=outcome.reason,
        purpose=row.purpose,
        region=row.region,
        policy=PolicyRef(outcome.regime, rulebook.version, outcome.regime_version),
        consent_record_id=outcome.record_id,
        at=at,
        as_known=request.as_known,
    )


async def _rulebook_for(
    conn: asyncpg.Connection, current: Rulebook, version: str | None, at: datetime
) -> Rulebook:
    if version is None:
        version = await policy_store.version_at(conn, at) or current.version
    if version == current.version:
        return current
    files = await policy_store.files_of(conn, version)
    if files is None:
        raise Absent(f"No policy version `{version}` was ever loaded (GET /v1/policies/versions lists them).")
    return _stored_rulebook(version, tuple(sorted(files.items())))


@functools.lru_cache(maxsize=8)
def _stored_rulebook(version: str, files: tuple[tuple[str, str], ...]) -> Rulebook:
    return Rulebook(build_policies(dict(files)))
