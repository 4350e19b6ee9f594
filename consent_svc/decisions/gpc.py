"""A Global Privacy Control signal from a known consumer, where the regime says it opts that consumer out (CCPA
regs 7025(c)(1)), becomes a refusal in the ledger for every purpose the signal covers, with the decision as
proof: a later request without the signal is no opt-in (7025(c)(5)), and downstream systems learn of it like
any refusal. A grant the consumer gave after an earlier signal had refused (consent asked for after the
conflict, 7025(c)(3)) is not overwritten, and stands.

Written after the answer (the decision's audit entry already holds the signal); if this write is lost, the
consumer's next signal makes it again.
"""

from __future__ import annotations

import asyncio
import logging
from uuid import UUID

import asyncpg

from consent_svc import crypto
from consent_svc.audit import store as audit_store
from consent_svc.consents.ledger import RecordRules, prepared, record_batch
from consent_svc.consents.types import Source
from consent_svc.decisions import store
from consent_svc.decisions.engine import Rulebook
from consent_svc.decisions.live import DATABASE_ERRORS
from consent_svc.decisions.types import Check, CheckRow, Decision
from consent_svc.exceptions import ServiceError

log = logging.getLogger("consent_svc.decisions")

GPC_SOURCE = Source(system="consent-svc", touchpoint="consent check", method="gpc_signal")


class GpcRecorder:
    """One per worker, beside its group commit."""

    def __init__(self, rulebook: Rulebook, rules: RecordRules, keys: crypto.Keys) -> None:
        self.rulebook, self.rules, self.keys = rulebook, rules, keys
        self._tasks: set[asyncio.Task] = set()
        # Subjects whose opt-out is being written: the checks of one page view arrive together, and each would
        # otherwise write the same refusals again.
        self._recording: set[UUID] = set()

    def _binds(self, regime_id: str) -> bool:
        gpc = self.rulebook.policies.regimes[regime_id].gpc
        return gpc is not None and gpc.binds_consumer

    def record(self, pool: asyncpg.Pool, checks: list[Check]) -> None:
        """Start writing the opt-outs of the decided checks whose signal binds their (known) consumer."""
        signals = {
            check.subject_id: (check.row, check.decision)
            for check in checks
            if check.decision is not None
            and check.decision.reason == "gpc_opt_out"
            and check.subject_id is not None
            and self._binds(check.decision.policy.regime)
            and check.subject_id not in self._recording
        }
        if not signals:
            return
        self._recording.update(signals)
        task = asyncio.get_running_loop().create_task(self._write(pool, signals))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._recording.difference_update(signals))

    async def _write(self, pool: asyncpg.Pool, signals: dict[UUID, tuple[CheckRow, Decision]]) -> None:
        regimes = self.rulebook.policies.regimes
        try:
            async with pool.acquire() as conn:
                # The check already read this for its own state; read again here because a grant may have
                # been committed since the answer, and the consumer's latest word must not be overwritten.
                regranted = await store.regranted_after_gpc(
                    conn, [(s, row.purpose) for s, (row, _) in signals.items()]
                )
                signals = {s: signal for s, signal in signals.items() if s not in regranted}
                covered = [
                    (subject_id, purpose)
                    for subject_id, (_, decision) in signals.items()
                    for purpose in regimes[decision.policy.regime].gpc.purposes
                ]
                # Refused already (by the consumer, or by a signal another worker recorded): nothing to add.
                refused = await store.refused(conn, covered)
                hashes = await store.a_hash_per_subject(conn, list(signals))
            records = [
                prepared(
                    [("gpc", "", hashes[subject_id])],
                    purpose,
                    "denied",
                    decision.evaluated_at,
                    row.region,
                    GPC_SOURCE,
                    self.rules,
                    proof={"signal": "Sec-GPC: 1", "decision_id": str(decision.decision_id)},
                )
                for subject_id, (row, decision) in signals.items()
                if subject_id in hashes
                for purpose in regimes[decision.policy.regime].gpc.purposes
                if (subject_id, purpose) not in refused
            ]
            if records:
                await record_batch(pool, self.keys, records, audit_store.SYSTEM)
        except (*DATABASE_ERRORS, ServiceError) as exc:
            log.warning("GPC opt-out not recorded, the next signal will: %s", type(exc).__name__)

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
