"""The worker's consent checker: validated checks go through a group commit to be decided and recorded, and a
GPC signal that binds its consumer is then written to the ledger.

Checks that arrive while a round trip is under way wait for the next one: one read of the current state for
all of them and one INSERT of all their decisions, committed once, before any is answered. The state is read
from PostgreSQL, never cached, so a withdrawal answered before a check began is seen on every worker.
"""

from __future__ import annotations

import logging

import asyncpg

from consent_svc import crypto
from consent_svc.consents.ledger import RecordRules
from consent_svc.decisions import checks, live
from consent_svc.decisions.engine import Rulebook
from consent_svc.decisions.gpc import GpcRecorder
from consent_svc.decisions.group_commit import GroupCommit
from consent_svc.decisions.live import DATABASE_ERRORS, two_subjects, unrecorded
from consent_svc.decisions.types import Check, CheckRequest, CheckRow, Decision, ReplayRequest

log = logging.getLogger("consent_svc.decisions")


class Decider:
    """One per worker process, on `app.state.decider`."""

    def __init__(self, rulebook: Rulebook, rules: RecordRules, keys: crypto.Keys):
        self.pool: asyncpg.Pool | None = None  # set by the app's lifespan
        self.rulebook, self.rules = rulebook, rules
        self.refs = live.policy_refs(rulebook)
        self.gpc = GpcRecorder(rulebook, rules, keys)
        self._group: GroupCommit[CheckRow, Decision] = GroupCommit(self._round_trip)

    def prepare(self, request: CheckRequest | ReplayRequest, api_key_id: str) -> CheckRow:
        return checks.prepare(request, self.rules, api_key_id)

    def prepare_batch(self, items: list[CheckRequest], api_key_id: str) -> list[CheckRow]:
        return checks.prepare_batch(items, self.rules, api_key_id)

    async def check(self, row: CheckRow) -> Decision:
        """Decided and recorded together with the checks that arrived beside it."""
        return await self._group.submit(row)

    async def check_batch(self, rows: list[CheckRow]) -> list[Decision]:
        """A batch: all decided and recorded in one commit, or a problem and no answer."""
        decided = [Check(row) for row in rows]
        await self._decide_and_record(decided, all_or_nothing=True)
        return [check.decision for check in decided]  # type: ignore[misc]

    async def _round_trip(self, rows: list[CheckRow]) -> list[Decision | Exception]:
        decided = [Check(row) for row in rows]
        await self._decide_and_record(decided)
        return [two_subjects([]) if check.decision is None else check.decision for check in decided]

    async def _decide_and_record(self, decided: list[Check], all_or_nothing: bool = False) -> None:
        try:
            await live.decide_and_record(self.pool, self.rulebook, self.refs, decided, all_or_nothing)
        except DATABASE_ERRORS as exc:
            log.warning("decisions not recorded: %s", type(exc).__name__)
            raise unrecorded() from None
        self.gpc.record(self.pool, decided)

    async def close(self) -> None:
        await self._group.close()
        await self.gpc.close()
