"""The console's audit trail: search, a subject's timeline, a decision explained, exports, chain verification.

A subject is found by an identifier typed into a form (POST): the identifier never enters a URL; pages name
the subject by its pseudonymous id.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Stream, Template

from consent_svc import crypto
from consent_svc.audit import store as audit_store
from consent_svc.audit.export import Export, csv_lines, ndjson_lines
from consent_svc.audit.integrator import Integrator
from consent_svc.audit.store import AuditFilter
from consent_svc.audit.verify import verify
from consent_svc.consents import store as consent_store
from consent_svc.consents.ledger import RecordRules, hash_typed
from consent_svc.console import users
from consent_svc.decisions import store as decision_store
from consent_svc.decisions.engine import Rulebook
from consent_svc.errors import ProblemError
from consent_svc.policies import store as policy_store
from consent_svc.policies.types import Policies
from consent_svc.settings import Settings
from consent_svc.web.pages import Form, now, page, swapped

PAGE = 100
RECENT_VERIFIED = 1000  # entries re-hashed by the verify button; `consent-svc audit verify` checks them all
OUTCOMES = ("", "allowed", "denied", "granted", "withdrawn", "completed", "rejected")


class SubjectForm(msgspec.Struct):
    kind: str = "email"
    value: str = ""


def _filter(
    action: str | None, outcome: str | None, since: str | None, until: str | None, subject: UUID | None
) -> AuditFilter:
    def when(text: str | None) -> datetime | None:
        if not text:
            return None
        try:
            value = datetime.fromisoformat(text if "T" in text else text + "T00:00:00+00:00")
        except ValueError:
            return None
        return value if value.tzinfo is not None and 1900 < value.year < 3000 else None

    return AuditFilter(
        subject_id=subject,
        action=(action or "")[:200] or None,
        outcome=(outcome or "")[:200] or None,
        since=when(since),
        until=when(until),
    )


class TrailController(Controller):
    path = "/console"
    include_in_schema = False

    @get("/audit")
    async def search(
        self,
        user: NamedDependency[users.SignedIn],
        request: Request,
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        settings: NamedDependency[Settings],
        action: FromQuery[str | None] = None,
        outcome: FromQuery[str | None] = None,
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        subject: FromQuery[UUID | None] = None,
    ) -> Template:
        if not user.may("audit:read"):
            return page(
                "console/audit.html", settings, user, 403, entries=[], error="Your role cannot read the log."
            )
        where = _filter(action, outcome, since, until, subject)
        async with pool.acquire() as conn:
            entries, _ = await audit_store.search(conn, where, None, PAGE)
            names = await users.actor_names(conn, keys, {e.actor for e in entries})
        query = request.url.query or ""
        name = "console/audit_results.html" if swapped(request) else "console/audit.html"
        return page(
            name, settings, user, entries=entries, names=names, where=where, query=query, outcomes=OUTCOMES
        )

    @post("/subjects/find", status_code=303)
    async def find_subject(
        self,
        user: NamedDependency[users.SignedIn],
        data: Annotated[SubjectForm, Form],
        pool: NamedDependency[asyncpg.Pool],
        rules: NamedDependency[RecordRules],
        settings: NamedDependency[Settings],
    ) -> Response:
        typed = hash_typed(data.kind, data.value, rules.lookup_hash)
        found = set()
        if typed is not None:
            async with pool.acquire() as conn:
                found = set((await consent_store.subjects_by_hash(conn, [typed[2]])).values())
        if len(found) != 1:
            return page(
                "console/audit.html",
                settings,
                user,
                404,
                entries=[],
                where=AuditFilter(),
                query="",
                outcomes=OUTCOMES,
                error="No subject has this identifier." if typed else "That is not a valid identifier.",
            )
        subject_id = found.pop()
        async with pool.acquire() as conn:
            entry = audit_store.entry(
                "console.subject_found", f"user:{user.user_id}", {}, subject_id=subject_id
            )
            await audit_store.append(conn, [entry])
        return Redirect(f"/console/subjects/{subject_id}", status_code=303)

    @get("/subjects/{subject_id:uuid}")
    async def subject(
        self,
        user: NamedDependency[users.SignedIn],
        subject_id: FromPath[UUID],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        settings: NamedDependency[Settings],
    ) -> Template:
        async with pool.acquire() as conn:
            view = await consent_store.subject_view(conn, keys, subject_id)
            entries, _ = await audit_store.search(
                conn, AuditFilter(subject_id=subject_id), None, 500, oldest_first=True
            )
            names = await users.actor_names(conn, keys, {e.actor for e in entries})
        return page(
            "console/subject.html",
            settings,
            user,
            200 if view else 404,
            view=view,
            entries=entries,
            names=names,
            subject_id=subject_id,
        )

    @get("/decisions/{decision_id:uuid}")
    async def decision(
        self,
        user: NamedDependency[users.SignedIn],
        decision_id: FromPath[UUID],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        settings: NamedDependency[Settings],
    ) -> Template:
        names = {}
        async with pool.acquire() as conn:
            found = await decision_store.recorded(conn, decision_id)
            if found is not None:
                names = await users.actor_names(conn, keys, {found.api_key_id})
        return page("console/decision.html", settings, user, 200 if found else 404, d=found, names=names)

    @get("/audit/export")
    async def export(
        self,
        user: NamedDependency[users.SignedIn],
        pool: NamedDependency[asyncpg.Pool],
        integrator: NamedDependency[Integrator],
        signer: NamedDependency[crypto.Signer],
        export_slots: NamedDependency[asyncio.Semaphore],
        format: FromQuery[str] = "ndjson",
        action: FromQuery[str | None] = None,
        outcome: FromQuery[str | None] = None,
        since: FromQuery[str | None] = None,
        until: FromQuery[str | None] = None,
        subject: FromQuery[UUID | None] = None,
    ) -> Stream:
        if not user.may("audit:read"):
            raise ProblemError("Your role cannot read the log.", status=403)
        where = _filter(action, outcome, since, until, subject)
        as_csv = format == "csv"
        async with pool.acquire() as conn:
            body = {"filter": msgspec.to_builtins(where._asdict()), "format": "csv" if as_csv else "ndjson"}
            entry = audit_store.entry("console.audit_exported", f"user:{user.user_id}", body)
            await audit_store.append(conn, [entry])
        checkpoint = await integrator.checkpoint()
        lines = csv_lines if as_csv else ndjson_lines
        return Stream(
            lines(Export(pool, signer, export_slots), where, checkpoint),
            media_type="text/csv" if as_csv else "application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="audit.{"csv" if as_csv else "ndjson"}"'},
        )

    @post("/audit/verify")
    async def verify_chain(
        self,
        user: NamedDependency[users.SignedIn],
        request: Request,
        pool: NamedDependency[asyncpg.Pool],
        signer: NamedDependency[crypto.Signer],
        settings: NamedDependency[Settings],
    ) -> Template:
        async with pool.acquire() as conn:
            latest = await audit_store.latest_checkpoint(conn)
            start = max(1, latest.tree_size - RECENT_VERIFIED + 1) if latest else 1
            report = await verify(conn, {signer.key_id: signer.public_key}, from_seq=start)
        name = "console/verify_result.html" if swapped(request) else "console/verify.html"
        return page(name, settings, user, latest=latest, report=report, start=start)

    @get("/policies")
    async def policies_page(
        self,
        user: NamedDependency[users.SignedIn],
        pool: NamedDependency[asyncpg.Pool],
        policies: NamedDependency[Policies],
        settings: NamedDependency[Settings],
    ) -> Template:
        async with pool.acquire() as conn:
            past = await policy_store.versions(conn)
        book = Rulebook(policies)
        today = now().date()
        purposes = [p.id for p in policies.purposes.purposes]
        rows = []
        for regime_id in sorted(policies.regimes):
            regime = policies.regimes[regime_id]
            regions = sorted(code for code, rid in policies.region_regime.items() if rid == regime_id)
            models = [book.rule(regime, purpose, today).model for purpose in purposes]
            rows.append((regime, regions, models))
        return page(
            "console/policies.html",
            settings,
            user,
            version=policies.version,
            purposes=purposes,
            rows=rows,
            past=past,
        )
