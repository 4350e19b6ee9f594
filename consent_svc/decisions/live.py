"""Live checks: read the state of every gathered check, decide each by the engine, record every decision in one
statement on one connection, committed before any is answered."""

from __future__ import annotations

import asyncio
from uuid import UUID

import asyncpg

from consent_svc import ids
from consent_svc.audit import store as audit_store
from consent_svc.decisions import store
from consent_svc.decisions.engine import Rulebook
from consent_svc.decisions.types import Check, Decision, PolicyRef
from consent_svc.exceptions import Conflicting, FieldError, Unrecorded

# A lost or refused database: the decision cannot be recorded, so it is not given (503).
DATABASE_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def two_subjects(items: list[int]) -> Conflicting:
    """`items`: the batch items in conflict (none for a single check)."""
    where = ", ".join(f"items[{i}]" for i in items)
    return Conflicting(
        f"{where + ': ' if where else ''}the identifiers belong to different subjects; check each subject on its own",
        title="Identifiers belong to different subjects",
        errors=[FieldError(f"items[{i}].subject.identifiers", "names two subjects") for i in items],
    )


def unrecorded() -> Unrecorded:
    return Unrecorded("The decision could not be recorded, so it is not given; retry shortly.")


def policy_refs(rulebook: Rulebook) -> dict[str, PolicyRef]:
    """Each regime's reference as decisions carry it."""
    return {r.id: PolicyRef(r.id, rulebook.version, r.version) for r in rulebook.policies.regimes.values()}


async def decide_and_record(
    pool: asyncpg.Pool,
    rulebook: Rulebook,
    refs: dict[str, PolicyRef],
    checks: list[Check],
    all_or_nothing: bool = False,
) -> None:
    """Set each check's decision, recorded; a check whose identifiers name two subjects is left in conflict
    and undecided (with all_or_nothing: Conflicting is raised, and nothing recorded). Raises DATABASE_ERRORS
    when nothing could be recorded."""
    needed = [rulebook.purposes_needed(c.row.purpose, c.row.context) for c in checks]
    async with pool.acquire() as conn:
        unix_ms = ids.now_ms()
        at = audit_store.ms_time(unix_ms)
        await store.read_states(conn, checks, needed)
        if all_or_nothing and (conflicting := [i for i, c in enumerate(checks) if c.conflict]):
            raise two_subjects(conflicting)
        decision_ids: list[UUID] = ids.uuid7s(len(checks), unix_ms)
        for check, decision_id in zip(checks, decision_ids, strict=True):
            if check.conflict:
                continue
            row = check.row
            outcome = rulebook.decide(row.region, row.purpose, row.context, check.states, at)
            check.decision = Decision(
                decision_id,
                outcome.allowed,
                outcome.reason,
                row.purpose,
                row.region,
                refs[outcome.regime],
                outcome.record_id,
                at,
            )
        await audit_store.append(conn, store.decision_entries(at, rulebook.version, checks))
