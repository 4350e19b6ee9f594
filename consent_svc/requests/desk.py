"""The request desk: intake, the lifecycle's transitions, erasure and fan-out to downstream systems.

Each method runs on a connection inside the caller's transaction, so a transition, its history row, its audit
entry and its outbound event commit together or not at all. The lifecycle is declared once (LIFECYCLE):

    received -> verifying -> verified -> in_progress -> completed | rejected      (`extended` is a flag)

A transition carries the request's row through (`_transition` returns it changed), so a request is read once
per action, locked, and not again after each write.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import crypto, ids, outbox
from consent_svc.audit import store as audit_store
from consent_svc.consents import store as consent_store
from consent_svc.consents.ledger import RecordRules, hash_identifiers, prepare_batch
from consent_svc.consents.types import ConsentBatch, ConsentRecordIn, Source, SubjectIdentifiers
from consent_svc.consents.types import Identifier as IdentifierIn
from consent_svc.exceptions import Absent, Conflicting, FieldError, Invalid
from consent_svc.policies.load import canonical_region
from consent_svc.policies.types import DsarRules, Policies
from consent_svc.requests import deadlines
from consent_svc.requests import store as request_store
from consent_svc.requests import systems as system_store
from consent_svc.requests.types import PublicRequestIn, RequestIn, SubjectRequest
from consent_svc.settings import Settings

OPEN = ("received", "verifying", "verified", "in_progress")
CLOSED = ("completed", "rejected")


class Step(NamedTuple):
    """One move of the lifecycle."""

    action: str
    """As the request's history and the audit log name it (`request.<action>`)."""
    from_states: tuple[str, ...]
    """The statuses it may start from; empty for intake, which starts from nothing."""
    to: str | None
    """The status it leads to; None: the status stays."""
    event: str | None
    """What subscribers are sent (webhooks/types.py EVENT_TYPES), if anything."""


LIFECYCLE: dict[str, Step] = {
    # A new request is `received`, or `verifying` when it came from the public and waits for its code.
    "receive": Step("received", (), None, "request.received"),
    "verify": Step("verify", ("received", "verifying"), "verified", "request.verified"),
    "start": Step("start", ("verified",), "in_progress", None),
    "complete": Step("complete", ("verified", "in_progress"), "completed", "request.completed"),
    # An opt-out takes effect without verification (CCPA regs 7026(d), OR 646A.576(5)(e)): done at receipt.
    "complete_opt_out": Step("complete", ("received",), "completed", "request.completed"),
    "reject": Step("reject", OPEN, "rejected", "request.rejected"),
    "extend": Step("extend", OPEN, None, "request.extended"),
    "notify_systems": Step("systems_notified", OPEN, None, None),
    # A system may confirm after the request closed (a staff member completed it first): it is still recorded.
    "confirm_system": Step("system_confirmed", OPEN + CLOSED, None, None),
}
# What an opt-out request switches off, as denied records: CCPA 1798.120 (one opt-out covers sale and sharing)
# and 1798.121 (limit the use of sensitive personal information).
OPT_OUT_PURPOSES = {"opt_out_of_sale": ("sale", "share"), "limit_sensitive": ("sensitive_data",)}
OPT_OUT_SOURCE = Source(system="consent-svc", touchpoint="privacy_request", method="opt_out_request")


class RequestEvent(msgspec.Struct, frozen=True):
    """The body of a `request.*` event: no personal data (the subject by its pseudonymous id only)."""

    request_id: UUID
    type: str
    status: str
    region: str
    due_at: date
    subject_id: UUID | None = None


class ActionRequested(msgspec.Struct, frozen=True):
    """`request.<type>_requested`, sealed, sent only to the systems that handle the type: the identifiers they
    need to find the person in their own data."""

    request_id: UUID
    type: str
    region: str
    due_at: date
    identifiers: list[dict[str, str]]
    confirm_url: str


class TransitionEntry(msgspec.Struct, frozen=True):
    """A transition's audit payload: the free-text reason stays in the request's own history (erasable)."""

    action: str
    from_status: str | None
    request_id: UUID
    to_status: str
    type: str


def _today(now: datetime) -> date:
    return now.astimezone(UTC).date()


class Desk:
    def __init__(self, policies: Policies, rules: RecordRules, keys: crypto.Keys, settings: Settings) -> None:
        self.policies, self.rules, self.keys, self.settings = policies, rules, keys, settings

    # -- intake ---------------------------------------------------------------------------------------------

    async def intake(
        self,
        conn: asyncpg.Connection,
        data: RequestIn | PublicRequestIn,
        actor: str,
        channel: str,
        now: datetime,
    ) -> tuple[UUID, bool]:
        """Record a request; (its id, whether it is new). A resubmission within the window answers the open
        request it repeats."""
        region = canonical_region(data.region)
        errors = [] if region is not None else [FieldError("region", "not an ISO 3166-1 or 3166-2 code")]
        received_at = getattr(data, "received_at", None) or now
        if received_at > now + self.rules.clock_skew:
            errors.append(FieldError("received_at", "is in the future"))
        hashed, bad = hash_identifiers(
            data.subject.identifiers, self.rules.lookup_hash, "subject.identifiers"
        )
        errors += bad
        if (data.type == "appeal") != (data.appeals is not None):
            field = "appeals" if data.type == "appeal" else "type"
            errors.append(
                FieldError(field, "an `appeal` names the request it appeals in `appeals`, and only it")
            )
        if errors:
            raise Invalid(f"{errors[0].field}: {errors[0].message}", errors=errors)
        assert region is not None
        if data.appeals is not None:
            appealed = await request_store.get(conn, data.appeals, _today(now))
            if appealed is None:
                raise Invalid("appeals: no such request", errors=[FieldError("appeals", "no such request")])
            if appealed.request.status not in CLOSED:
                raise Conflicting("The appealed request is still open: an appeal is against its outcome.")

        hashes = sorted({h for (_, _, h) in hashed})
        repeated = await request_store.recent_same(
            conn, hashes, data.type, self.settings.request_duplicate_window_seconds
        )
        if repeated is not None:
            return repeated, False

        received = _today(received_at)
        regime, rules = self.policies.dsar_on(region, received)
        plan = deadlines.schedule(rules, data.type, region, received, None)
        subjects = set((await consent_store.subjects_by_hash(conn, hashes)).values())
        request_id = ids.uuid7s(1)[0]
        data_key = crypto.new_data_key()
        identifiers = msgspec.json.encode([(kind, value) for (kind, value, _) in hashed])
        details = msgspec.json.encode(data.details) if data.details is not None else None
        opt_out = data.type in deadlines.OPT_OUT_TYPES
        status = "received" if actor != "public" or opt_out else "verifying"
        await request_store.insert(
            conn,
            request_store.NewRequest(
                request_id=request_id,
                type=data.type,
                status=status,
                region=region,
                regime=regime.id,
                policy_version=self.policies.version,
                channel=channel,
                lookup_hashes=hashes,
                subject_id=subjects.pop() if len(subjects) == 1 else None,
                wrapped_key=self.keys.wrap(data_key, request_id.bytes),
                master_key_id=self.keys.master_key_id,
                identifiers_enc=crypto.seal(data_key, identifiers, request_store.identifiers_aad(request_id)),
                details_enc=(
                    crypto.seal(data_key, details, request_store.details_aad(request_id)) if details else None
                ),
                appeals=data.appeals,
                received_at=received_at,
                clock_start=plan.clock_start,
                due_at=plan.due,
                acknowledge_by=plan.acknowledge_by,
                created_by=actor,
            ),
        )
        row = await request_store.get(conn, request_id, _today(now))
        assert row is not None
        row = await self._transition(conn, row, "receive", actor, None, now)
        if opt_out:
            # The law does not let a business demand verification of an opt-out (CCPA regs 7026(d), OR
            # 646A.576(5)(e)): it takes effect at once, as refusals in the ledger.
            await self._opt_out(
                conn, request_id, data.type, region, data.subject.identifiers, received_at, now
            )
            row, _ = await self._notify_systems(conn, row, now)
            await self._transition(conn, row, "complete_opt_out", "system", "opt-out recorded", now)
        return request_id, True

    async def _opt_out(
        self,
        conn: asyncpg.Connection,
        request_id: UUID,
        request_type: str,
        region: str,
        identifiers: list[IdentifierIn],
        received_at: datetime,
        now: datetime,
    ) -> None:
        batch = ConsentBatch(
            records=[
                ConsentRecordIn(
                    subject=SubjectIdentifiers(identifiers=identifiers),
                    purpose=purpose,
                    status="denied",
                    collected_at=received_at,
                    region=region,
                    source=OPT_OUT_SOURCE,
                    proof={"request_id": str(request_id)},
                )
                for purpose in OPT_OUT_PURPOSES[request_type]
                if purpose in self.rules.purposes
            ]
        )
        try:
            async with conn.transaction():  # a savepoint: an erased person has nothing left to opt out of
                await consent_store.insert_records(
                    conn, self.keys, prepare_batch(batch, self.rules, now), "system"
                )
        except consent_store.SubjectErased:
            pass

    # -- transitions ----------------------------------------------------------------------------------------

    async def verify(
        self,
        conn: asyncpg.Connection,
        request_id: UUID,
        actor: str,
        reason: str,
        verified_at: datetime | None,
        now: datetime,
    ) -> None:
        row = await self._open(conn, request_id, now, "verify")
        request = row.request
        verified_at = verified_at or now
        if verified_at > now + self.rules.clock_skew or verified_at < request.received_at:
            raise Invalid(
                "verified_at: must lie between the request's receipt and now",
                errors=[FieldError("verified_at", "must lie between the request's receipt and now")],
            )
        # UK GDPR Art 12A: the clock starts when the identity information arrives, if after receipt.
        plan, rules = self._plan(request, _today(verified_at))
        due = (
            deadlines.extended_due(plan, request.region, rules.weekend_rollover)
            if request.extended
            else plan.due
        )
        subjects = await self.subjects(conn, row)
        subject_id = await request_store.set_verified(
            conn, request_id, verified_at, plan.clock_start, due, subjects[0] if len(subjects) == 1 else None
        )
        row = _with(row, verified_at=verified_at, due_at=due, subject_id=subject_id)
        row = msgspec.structs.replace(row, clock_start=plan.clock_start)
        row = await self._transition(conn, row, "verify", actor, reason, now)
        await self._proceed(conn, row, now)

    async def _proceed(self, conn: asyncpg.Connection, row: request_store.Row, now: datetime) -> None:
        """What follows verification: downstream systems are told; a deletion is carried out here at once."""
        row, told = await self._notify_systems(conn, row, now)
        if row.request.type != "deletion":
            return
        row = await self._erase(conn, row, now)
        row = await self._transition(conn, row, "start", "system", "erased in this service", now)
        if not told:
            await self._transition(conn, row, "complete", "system", "no downstream system to wait for", now)

    async def _erase(
        self, conn: asyncpg.Connection, row: request_store.Row, now: datetime
    ) -> request_store.Row:
        """Crypto-shredding: the subjects' data keys, their look-up rows, and the identifiers every request about
        them holds (this one's too); keyed hashes stay as suppression entries."""
        subjects = await self.subjects(conn, row)
        erased = await consent_store.erase(conn, subjects, row.lookup_hashes, row.request.id)
        for related in await request_store.related(conn, row.lookup_hashes, subjects, _today(now)):
            await request_store.destroy_key(conn, related.id)
        entries, events = [], []
        for subject_id in erased:
            body = {"request_id": str(row.request.id), "subject_id": str(subject_id)}
            entries.append(audit_store.entry("subject.erased", "system", body, subject_id=subject_id))
            events.append(outbox.event("subject.erased", body, subject_id=subject_id))
        if entries:
            await audit_store.append(conn, entries)
            await outbox.append(conn, events)
        return msgspec.structs.replace(row, wrapped_key=None, identifiers_enc=None, details_enc=None)

    async def extend(
        self, conn: asyncpg.Connection, request_id: UUID, actor: str, reason: str, now: datetime
    ) -> None:
        row = await self._open(conn, request_id, now, "extend")
        request = row.request
        if request.extended:
            raise Conflicting("This request was extended already; the law allows one extension.")
        identity = _today(request.verified_at) if request.verified_at else None
        plan, rules = self._plan(request, identity)
        if plan.extension is None:
            raise Conflicting(
                f"The law of {request.region} ({request.regime}) allows no extension.", title="No extension"
            )
        if _today(now) > request.due_at:
            # GDPR 12(3), CCPA regs 7021(b): the person is told of the extension within the first period.
            raise Conflicting(
                "The first period is over: an extension must be given within it.", title="Too late"
            )
        due = deadlines.extended_due(plan, request.region, rules.weekend_rollover)
        await request_store.set_extended(conn, request_id, due)
        await self._transition(conn, _with(row, extended=True, due_at=due), "extend", actor, reason, now)

    async def reject(
        self, conn: asyncpg.Connection, request_id: UUID, actor: str, reason: str, now: datetime
    ) -> None:
        row = await self._open(conn, request_id, now, "reject")
        await self._transition(conn, row, "reject", actor, reason, now)

    async def complete(
        self, conn: asyncpg.Connection, request_id: UUID, actor: str, reason: str | None, now: datetime
    ) -> None:
        row = await self._open(conn, request_id, now, "complete")
        waiting = await request_store.unconfirmed(conn, request_id)
        if waiting:
            raise Conflicting(
                f"{waiting} downstream system(s) have not confirmed yet.", title="Systems pending"
            )
        await self._transition(conn, row, "complete", actor, reason, now)

    async def confirm(
        self, conn: asyncpg.Connection, request_id: UUID, system_id: UUID, actor: str, now: datetime
    ) -> None:
        row = await request_store.get(conn, request_id, _today(now), lock=True)
        if row is None or await request_store.confirm_system(conn, request_id, system_id) is None:
            raise Absent("No such request for this system.")
        row = await self._transition(conn, row, "confirm_system", actor, None, now)
        if row.request.status == "in_progress" and not await request_store.unconfirmed(conn, request_id):
            await self._transition(conn, row, "complete", "system", "every system confirmed", now)

    async def announce_deadlines(self, conn: asyncpg.Connection, now: datetime) -> int:
        """`request.due_soon` within the lead time, `request.overdue` the day after the due date: each once."""
        today = _today(now)
        lead = today + timedelta(days=self.settings.request_due_soon_days)
        rows = [("request.overdue", r) for r in await request_store.newly_overdue(conn, today)]
        rows += [("request.due_soon", r) for r in await request_store.due_soon(conn, lead, today)]
        announced, entries = [], []
        for event_type, r in rows:
            body = RequestEvent(r["request_id"], r["type"], r["status"], r["region"], r["due_at"])
            announced.append(outbox.event(event_type, body))
            entries.append(audit_store.entry(event_type, "system", body))
        if rows:
            await outbox.append(conn, announced)
            await audit_store.append(conn, entries)
        return len(rows)

    # -- helpers --------------------------------------------------------------------------------------------

    def _plan(self, request: SubjectRequest, identity: date | None) -> tuple[deadlines.Schedule, DsarRules]:
        received = _today(request.received_at)
        _, rules = self.policies.dsar_on(request.region, received)
        return deadlines.schedule(rules, request.type, request.region, received, identity), rules

    async def _open(
        self, conn: asyncpg.Connection, request_id: UUID, now: datetime, step: str
    ) -> request_store.Row:
        """The request, locked for the rest of the transaction, if `step` may start from where it is."""
        row = await request_store.get(conn, request_id, _today(now), lock=True)
        if row is None:
            raise Absent("No such request.")
        _check(row, step)
        return row

    async def subjects(self, conn: asyncpg.Connection, row: request_store.Row) -> list[UUID]:
        found = set((await consent_store.subjects_by_hash(conn, row.lookup_hashes)).values())
        if row.request.subject_id is not None:
            found.add(row.request.subject_id)
        return sorted(found)

    async def _notify_systems(
        self, conn: asyncpg.Connection, row: request_store.Row, now: datetime
    ) -> tuple[request_store.Row, bool]:
        """Tell the downstream systems that handle the request's type: the row as it is then, and whether there
        was any to tell."""
        targets = await system_store.handling(conn, row.request.type)
        if not targets:
            return row, False
        request = row.request
        await request_store.notify_systems(conn, request.id, [t.system_id for t in targets])
        body = ActionRequested(
            request_id=request.id,
            type=request.type,
            region=request.region,
            due_at=request.due_at,
            identifiers=[{"type": k, "value": v} for k, v in request_store.open_identifiers(self.keys, row)],
            confirm_url=f"/v1/requests/{request.id}/systems/{{system_id}}/confirm",
        )
        event = outbox.sealed_event(
            self.keys,
            f"request.{request.type}_requested",
            body,
            audience=[t.subscription_id for t in targets],
        )
        await outbox.append(conn, [event])
        names = ", ".join(t.name for t in targets)
        return await self._transition(conn, row, "notify_systems", "system", names, now), True

    async def _transition(
        self,
        conn: asyncpg.Connection,
        row: request_store.Row,
        step_name: str,
        actor: str,
        reason: str | None,
        now: datetime,
    ) -> request_store.Row:
        """Make a step of LIFECYCLE: the status, a history row, an audit entry and the event subscribers
        follow. Returns the row as it now stands (a new value: a Row is immutable)."""
        step = _check(row, step_name)
        request = row.request
        from_status = request.status if step.from_states else None
        if step.to is not None:
            closed_at = await request_store.set_status(conn, request.id, step.to)
            row = _with(row, status=step.to, closed_at=closed_at)
            request = row.request
        await request_store.add_history(
            conn, request.id, step.action, from_status, request.status, actor, reason
        )
        payload = TransitionEntry(step.action, from_status, request.id, request.status, request.type)
        entry = audit_store.entry(
            f"request.{step.action}", actor, payload, subject_id=request.subject_id, outcome=request.status
        )
        await audit_store.append(conn, [entry])
        if step.event is not None:
            body = RequestEvent(
                request.id, request.type, request.status, request.region, request.due_at, request.subject_id
            )
            await outbox.append(conn, [outbox.event(step.event, body)])
        return row


def _check(row: request_store.Row, step_name: str) -> Step:
    """The step, if the request may make it from its status; Conflicting (an illegal transition) if not."""
    step = LIFECYCLE[step_name]
    status = row.request.status
    if step.from_states and status not in step.from_states:
        allowed = " or ".join(f"`{s}`" for s in step.from_states)
        raise Conflicting(
            f"`{step.action}` does not apply to a request that is `{status}`: only to one that is {allowed}.",
            title="Illegal transition",
        )
    return step


def _with(row: request_store.Row, **changes: object) -> request_store.Row:
    """The row with its request's fields changed (what a write just stored)."""
    return msgspec.structs.replace(row, request=msgspec.structs.replace(row.request, **changes))
