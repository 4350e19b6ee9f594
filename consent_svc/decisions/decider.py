"""Answering checks: validate, read state, decide, record durably, answer — many checks per round trip.

Checks that arrive while a round trip is under way wait for the next one (group commit): one read of the
current state for all of them and one INSERT of all their decisions, committed once, before any is
answered. A check joins only a round trip whose read has not started, so a withdrawal answered before the
check began is always seen, on every worker: the state is read from PostgreSQL, never cached.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from datetime import UTC, datetime
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import crypto, ids
from consent_svc.audit import store as audit_store
from consent_svc.consents.identity import IdentifierError, normalize
from consent_svc.consents.ledger import RecordRules, prepared, record_batch
from consent_svc.consents.types import Source
from consent_svc.decisions import store
from consent_svc.decisions.engine import Rulebook
from consent_svc.decisions.store import CheckRow
from consent_svc.decisions.types import (
    CheckRequest,
    Decision,
    PolicyRef,
    RecordedDecision,
    ReplayedDecision,
    ReplayRequest,
)
from consent_svc.errors import (
    Conflict,
    FieldError,
    InvalidInput,
    NotFound,
    ProblemError,
    Unavailable,
    each_valid,
    out_of_range,
)
from consent_svc.policies import store as policy_store
from consent_svc.policies.load import UNKNOWN_REGION, build_policies, canonical_region

log = logging.getLogger("consent_svc.decisions")

# Two round trips in flight per worker: one reading or writing while the next one's checks gather.
MAX_IN_FLIGHT = 2
MAX_UNIX_MS = 253_402_300_799_000  # 9999-12-31T23:59:59Z
DATABASE_ERRORS = (OSError, asyncio.TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


GPC_SOURCE = Source(system="consent-svc", touchpoint="consent check", method="gpc_signal")


def two_subjects(items: list[int]) -> Conflict:
    where = ", ".join(f"items[{i}]" for i in items)
    return Conflict(
        f"{where + ': ' if where else ''}the identifiers belong to different subjects; check each subject on its own",
        title="Identifiers belong to different subjects",
        errors=[FieldError(f"items[{i}].subject.identifiers", "names two subjects") for i in items],
    )


def unrecorded() -> Unavailable:
    return Unavailable("The decision could not be recorded, so it is not given; retry shortly.")


class Decider:
    """One per worker process, on `app.state.decider`."""

    def __init__(self, rulebook: Rulebook, rules: RecordRules, keys: crypto.Keys):
        self.pool: asyncpg.Pool | None = None  # set by the app's lifespan
        self.rulebook = rulebook
        self.purposes = rulebook.policies.purpose_ids
        self.rules, self.keys = rules, keys
        self.lookup_hash = rules.lookup_hash
        self.policy_refs = {
            r.id: PolicyRef(r.id, rulebook.version, r.version) for r in rulebook.policies.regimes.values()
        }
        self._pending: list[tuple[CheckRow, asyncio.Future]] = []
        self._in_flight = 0
        self._scheduled = False
        self._tasks: set[asyncio.Task] = set()
        # Subjects whose GPC opt-out is being written: the checks of one page view arrive together, and each
        # would otherwise write the same refusals again.
        self._gpc_recording: set[UUID] = set()

    # -- validation -------------------------------------------------------------------------------------

    def prepare(
        self, request: CheckRequest | ReplayRequest, api_key_id: str, item: int | None = None
    ) -> CheckRow:
        """InvalidInput (422) naming each bad field (under `items[i].` for a batch item); an unknown subject is
        not an error."""
        region = canonical_region(request.region) if request.region is not None else UNKNOWN_REGION
        hashes: list[bytes] = []
        errors: list[FieldError] = []
        if request.subject.identifiers is not None:
            default_region = region[:2] if region and region != UNKNOWN_REGION else None
            for j, identifier in enumerate(request.subject.identifiers):
                try:
                    value = normalize(
                        identifier.type, identifier.value, identifier.default_region or default_region
                    )
                except IdentifierError as exc:
                    errors.append(FieldError(f"subject.identifiers[{j}].value", str(exc)))
                    continue
                hashes.append(self.lookup_hash(identifier.type, value))
        if request.purpose not in self.purposes:
            errors.append(
                FieldError("purpose", f"unknown purpose `{request.purpose}` (see GET /v1/purposes)")
            )
        if region is None:
            errors.append(FieldError("region", "not an ISO 3166-1 alpha-2 or ISO 3166-2 code (ZZ: unknown)"))
        if errors:
            where = "" if item is None else f"items[{item}]."
            errors = [FieldError(where + e.field, e.message) for e in errors]
            raise InvalidInput(f"{errors[0].field}: {errors[0].message}", errors=errors)
        return CheckRow(hashes, request.subject.id, request.purpose, region, request.context, api_key_id)

    def prepare_batch(self, items: list[CheckRequest], api_key_id: str) -> list[CheckRow]:
        return each_valid(items, lambda i, item: self.prepare(item, api_key_id, i), "nothing was decided")

    # -- live checks --------------------------------------------------------------------------------------

    async def check(self, row: CheckRow) -> Decision:
        future = asyncio.get_running_loop().create_future()
        self._pending.append((row, future))
        self._schedule()
        return await future

    def _schedule(self) -> None:
        # call_soon: checks whose requests were parsed in the same turn of the loop share the round trip.
        if not self._scheduled and self._in_flight < MAX_IN_FLIGHT:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if not self._pending or self._in_flight >= MAX_IN_FLIGHT:
            return
        batch, self._pending = self._pending, []
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._round_trip(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _round_trip(self, batch: list[tuple[CheckRow, asyncio.Future]]) -> None:
        try:
            decisions = await self.decide_and_record([row for row, _ in batch])
        except DATABASE_ERRORS as exc:
            log.warning("decisions not recorded: %s", type(exc).__name__)
            for _, future in batch:
                if not future.done():
                    future.set_exception(unrecorded())
        except BaseException as exc:  # answered 500 by the caller's handler, logged there
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), decision in zip(batch, decisions, strict=True):
                if future.done():  # the caller may have gone away; its decision is recorded anyway
                    continue
                if isinstance(decision, Conflict):
                    future.set_exception(decision)
                else:
                    future.set_result(decision)
        finally:
            self._in_flight -= 1
            if self._pending:
                self._schedule()

    async def decide_and_record(
        self, rows: list[CheckRow], all_or_nothing: bool = False
    ) -> list[Decision | Conflict]:
        """Decide every check on one connection and record them all in one committed statement. A check
        whose identifiers name two subjects gets a Conflict instead (with all_or_nothing: raised, and
        nothing recorded)."""
        rulebook, refs = self.rulebook, self.policy_refs
        needed = [rulebook.purposes_needed(r.purpose, r.context) for r in rows]
        async with self.pool.acquire() as conn:
            unix_ms = ids.now_ms()
            at = audit_store.ms_time(unix_ms)
            states, conflicting = await store.current_states(conn, rows, needed)
            if conflicting and all_or_nothing:
                raise two_subjects(sorted(conflicting))
            decision_ids = ids.uuid7s(len(rows), unix_ms)
            answers: list[Decision | Conflict] = []
            for i, row in enumerate(rows):
                if i in conflicting:
                    answers.append(two_subjects([]))
                    continue
                outcome = rulebook.decide(row.region, row.purpose, row.context, states[i][1], at)
                answers.append(
                    Decision(
                        decision_ids[i],
                        outcome.allowed,
                        outcome.reason,
                        row.purpose,
                        row.region,
                        refs[outcome.regime],
                        outcome.record_id,
                        at,
                    )
                )
            await self._honour_consent_after_gpc_conflict(conn, rows, states, answers)
            kept = [i for i in range(len(rows)) if i not in conflicting] if conflicting else range(len(rows))
            entries = store.decision_entries(
                at,
                rulebook.version,
                [rows[i] for i in kept],
                [states[i][0] for i in kept],
                [answers[i] for i in kept],
            )
            await audit_store.append(conn, entries)
        signals = {
            states[i][0]: (rows[i], answer)
            for i, answer in enumerate(answers)
            if isinstance(answer, Decision)
            and answer.reason == "gpc_opt_out"
            and states[i][0] is not None
            and self._gpc_binds(answer.policy.regime)
            and states[i][0] not in self._gpc_recording
        }
        if signals:
            self._gpc_recording.update(signals)
            task = asyncio.get_running_loop().create_task(self._record_gpc_opt_outs(signals))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(lambda _: self._gpc_recording.difference_update(signals))
        return answers

    async def _honour_consent_after_gpc_conflict(
        self,
        conn: asyncpg.Connection,
        rows: list[CheckRow],
        states: list[tuple[UUID | None, dict]],
        answers: list[Decision | Conflict],
    ) -> None:
        """CCPA regs 7025(c)(3): the signal beats an earlier business-specific allow, but the business may tell
        the consumer of the conflict and ask for consent; a grant given after the signal was recorded as a
        refusal is that consent, and stands although the browser still sends the signal. Only checks the
        signal denied over a grant, in a regime where it binds the consumer, cost this extra read."""
        overridden = [
            i
            for i, answer in enumerate(answers)
            if isinstance(answer, Decision)
            and answer.reason == "gpc_opt_out"
            and answer.consent_record_id is not None
            and self._gpc_binds(answer.policy.regime)
        ]
        if not overridden:
            return
        regranted = await store.regranted_after_gpc(
            conn, [(states[i][0], rows[i].purpose) for i in overridden]
        )
        for i in overridden:
            if states[i][0] in regranted:
                answers[i] = msgspec.structs.replace(answers[i], allowed=True, reason="consent_granted")

    def _gpc_binds(self, regime_id: str) -> bool:
        gpc = self.rulebook.policies.regimes[regime_id].gpc
        return gpc is not None and gpc.binds_consumer

    async def _record_gpc_opt_outs(self, signals: dict[UUID, tuple[CheckRow, Decision]]) -> None:
        """A GPC signal from a known consumer, where the regime says it opts that consumer out (CCPA regs
        7025(c)(1)), becomes a refusal in the ledger for every purpose the signal covers, with the decision as
        proof: a later request without the signal is no opt-in (7025(c)(5)), and downstream systems learn of
        it like any refusal. A grant the consumer gave after an earlier signal had refused (consent asked for
        after the conflict, regs 7025(c)(3)) is not overwritten, and stands. Written after the answer (the decision row already holds the signal); if this write is
        lost, the consumer's next signal makes it again."""
        try:
            async with self.pool.acquire() as conn:
                regranted = await store.regranted_after_gpc(
                    conn, [(s, row.purpose) for s, (row, _) in signals.items()]
                )
                signals = {s: signal for s, signal in signals.items() if s not in regranted}
                covered = [
                    (subject_id, purpose)
                    for subject_id, (_, decision) in signals.items()
                    for purpose in self.rulebook.policies.regimes[decision.policy.regime].gpc.purposes
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
                for purpose in self.rulebook.policies.regimes[decision.policy.regime].gpc.purposes
                if (subject_id, purpose) not in refused
            ]
            if records:
                await record_batch(self.pool, self.keys, records, audit_store.SYSTEM)
        except (*DATABASE_ERRORS, ProblemError) as exc:
            log.warning("GPC opt-out not recorded, the next signal will: %s", type(exc).__name__)

    async def record_batch(self, rows: list[CheckRow]) -> list[Decision]:
        """A batch: all decided and recorded in one commit, or a 503 and no answer."""
        try:
            return await self.decide_and_record(rows, all_or_nothing=True)  # type: ignore[return-value]
        except DATABASE_ERRORS as exc:
            log.warning("decisions not recorded: %s", type(exc).__name__)
            raise unrecorded() from None

    # -- replays ------------------------------------------------------------------------------------------

    async def replay(self, request: ReplayRequest, api_key_id: str) -> ReplayedDecision:
        if errors := out_of_range([("at", request.at)]):
            raise InvalidInput(errors=errors)
        at = request.at.astimezone(UTC)  # dated rules start on UTC days, as for live checks
        row = self.prepare(request, api_key_id)
        async with self.pool.acquire() as conn:
            rulebook = await self._rulebook_for(conn, request.policy_version, at)
            subject_id = row.subject_id
            if subject_id is None and row.hashes:
                found = await store.subjects_of(conn, row.hashes)
                if len(found) > 1:
                    raise two_subjects([])
                subject_id = found[0] if found else None
            needed = rulebook.purposes_needed(row.purpose, row.context)
            held = await store.states_at(conn, subject_id, needed, at, request.as_known) if subject_id else {}
        if row.purpose not in rulebook.policies.purpose_ids:
            raise InvalidInput(f"purpose: `{row.purpose}` is not in policy version {rulebook.version}")
        outcome = rulebook.decide(row.region, row.purpose, row.context, held, at)
        replayed = ReplayedDecision(
            allowed=outcome.allowed,
            reason=outcome.reason,
            purpose=row.purpose,
            region=row.region,
            policy=PolicyRef(outcome.regime, rulebook.version, outcome.regime_version),
            consent_record_id=outcome.record_id,
            at=at,
            as_known=request.as_known,
        )
        # Recorded like every action, though it is not a live decision: who asked what about whom, and when.
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
        async with self.pool.acquire() as conn:
            await audit_store.append(
                conn,
                [
                    audit_store.entry(
                        "decision.replayed",
                        api_key_id,
                        body,
                        subject_id,
                        "allowed" if outcome.allowed else "denied",
                    )
                ],
            )
        return replayed

    async def _rulebook_for(self, conn: asyncpg.Connection, version: str | None, at: datetime) -> Rulebook:
        if version is None:
            version = await policy_store.version_at(conn, at) or self.rulebook.version
        if version == self.rulebook.version:
            return self.rulebook
        files = await policy_store.files_of(conn, version)
        if files is None:
            raise NotFound(
                f"No policy version `{version}` was ever loaded (GET /v1/policies/versions lists them)."
            )
        return _stored_rulebook(version, tuple(sorted(files.items())))

    async def recorded(self, decision_id: UUID) -> RecordedDecision:
        found = None
        # Decision ids are UUIDv7 stamped with decided_at: anything else (or a stamp past datetime's range)
        # names no decision.
        if decision_id.version == 7 and ids.uuid7_ms(decision_id) < MAX_UNIX_MS:
            decided_at = audit_store.ms_time(ids.uuid7_ms(decision_id))
            async with self.pool.acquire() as conn:
                found = await store.fetch_decision(conn, decision_id, decided_at)
        if found is None:
            raise NotFound("No decision with this id.")
        return found

    async def close(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


@functools.lru_cache(maxsize=8)
def _stored_rulebook(version: str, files: tuple[tuple[str, str], ...]) -> Rulebook:
    return Rulebook(build_policies(dict(files)))
