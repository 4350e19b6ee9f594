"""The privacy center (`/privacy`): customers ask for their data, confirm with a one-time code, follow their
request, and opt out of sale and sharing without any code. Server-rendered; works without JavaScript.

The same rules as `POST /public/requests` (requests/public.py does the work): no enumeration, rate limits, and
errors in plain language. Identifiers travel only in form bodies; URLs name requests, never people.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Redirect, Template

from consent_svc import crypto
from consent_svc.consents import store as consent_store
from consent_svc.consents.ledger import RecordRules, hash_typed, prepare_batch, record_batch
from consent_svc.consents.types import (
    ConsentBatch,
    ConsentRecordIn,
    Identifier,
    Notice,
    Source,
    SubjectIdentifiers,
)
from consent_svc.errors import REFUSALS, ProblemError, problem_of
from consent_svc.policies.load import canonical_region
from consent_svc.policies.types import Policies
from consent_svc.privacy import preferences
from consent_svc.requests import public, verification
from consent_svc.requests.desk import Desk
from consent_svc.requests.types import PublicRequestIn, RequestSubject
from consent_svc.settings import Settings
from consent_svc.web.pages import Form, page, swapped

CHOICES = (
    ("access", "See what you hold about me"),
    ("portability", "Give me a copy of my data"),
    ("correction", "Correct my data"),
    ("deletion", "Delete my data"),
    ("opt_out_of_sale", "Stop selling or sharing my data"),
    ("limit_sensitive", "Limit the use of my sensitive data"),
)
LABELS = dict(CHOICES)
STATUS_WORDS = {
    "received": "Received",
    "verifying": "Waiting for your code",
    "verified": "Confirmed: we are working on it",
    "in_progress": "In progress",
    "completed": "Done",
    "rejected": "Closed: we wrote to you with the reasons",
}
REGIONS = (
    ("US-CA", "California"),
    ("US-CO", "Colorado"),
    ("US-VA", "Virginia"),
    ("US-TX", "Texas"),
    ("GB", "United Kingdom"),
    ("DE", "Germany"),
    ("FR", "France"),
    ("IE", "Ireland"),
    ("BR", "Brazil"),
    ("CA", "Canada"),
    ("ZZ", "Somewhere else"),
)
# Plain words for what the API says in problem details.
PLAIN = {
    400: "We could not read that. Please check the form and try again.",
    404: "We could not find a request waiting for a code. Please start again.",
    409: "Too many wrong codes: this request is locked. Please send your request again for a new code.",
    410: "This code has expired. Please send your request again for a new one.",
    413: "That was too long. Please shorten it.",
    429: "Too many requests. Please try again in an hour.",
}


class RequestForm(msgspec.Struct):
    type: str = ""
    kind: str = "email"
    value: str = ""
    region: str = "ZZ"


class CodeForm(msgspec.Struct):
    code: str = ""


class IdentifierForm(msgspec.Struct):
    kind: str = "email"
    value: str = ""
    region: str = "ZZ"


SESSION_COOKIE = "consent_privacy"
EXPORT_COOKIE = "consent_export"
EXPORTABLE = ("access", "portability")
STILL_WORKING = ("verified", "in_progress")  # the status page refreshes itself while it shows one of these
ERASED = (
    "We deleted the data we held about this address at your request, so we cannot record choices for it. "
    "Please contact us if you want to start again."
)
SHOWN_STATES = {"granted": "allowed", "denied": "not allowed", "withdrawn": "not allowed"}


def _page(name: str, request: Request, settings: Settings, status: int = 200, /, **context) -> Template:
    """A privacy-center page: no staff member, and what every one of its forms shows (the browser's GPC)."""
    gpc = request.headers.get("sec-gpc", "").strip() == "1"
    return page(name, settings, None, status, gpc=gpc, regions=REGIONS, choices=CHOICES, **context)


def _plain(exc: ProblemError) -> str:
    if exc.status_code == 422:
        return "Please check what you typed: " + (
            exc.detail.split(": ", 1)[-1] if exc.detail else "it is not valid."
        )
    return PLAIN.get(exc.status_code, "Something went wrong. Please try again.")


class PrivacyCenterController(Controller):
    path = "/privacy"
    include_in_schema = False
    request_max_body_size = public.MAX_PUBLIC_BODY

    @get("/")
    async def index(self, request: Request, settings: NamedDependency[Settings]) -> Template:
        return _page("privacy/index.html", request, settings)

    @get("/do-not-sell")
    async def do_not_sell(self, request: Request, settings: NamedDependency[Settings]) -> Template:
        return _page("privacy/do_not_sell.html", request, settings)

    @post("/requests", status_code=303)
    async def submit(
        self,
        request: Request,
        data: Annotated[RequestForm, Form],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        desk: NamedDependency[Desk],
        settings: NamedDependency[Settings],
    ) -> Response:
        back = "privacy/do_not_sell.html" if data.type == "opt_out_of_sale" else "privacy/index.html"
        if data.type not in LABELS or data.kind not in ("email", "phone") or not data.value.strip():
            return _page(
                back, request, settings, 422, error="Please choose what you would like and how to reach you."
            )
        try:
            ask = PublicRequestIn(
                type=data.type,  # type: ignore[arg-type]
                subject=RequestSubject(identifiers=[Identifier(type=data.kind, value=data.value[:320])]),
                region=data.region[:6] or "ZZ",
            )
            accepted = await public.submit(pool, keys, desk, settings, ask, public.client_address(request))
        except REFUSALS as refused:
            exc = problem_of(refused)
            return _page(back, request, settings, exc.status_code, error=_plain(exc))
        return Redirect(f"/privacy/requests/{accepted.id}", status_code=303)

    @get("/requests/{request_id:uuid}")
    async def request_page(
        self,
        request: Request,
        request_id: FromPath[UUID],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        settings: NamedDependency[Settings],
    ) -> Template:
        return await _status_page(request, pool, keys, settings, request_id)

    @post("/requests/{request_id:uuid}/verify", status_code=303)
    async def verify(
        self,
        request: Request,
        request_id: FromPath[UUID],
        data: Annotated[CodeForm, Form],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        desk: NamedDependency[Desk],
        settings: NamedDependency[Settings],
    ) -> Response:
        try:
            confirmed = await public.confirm(
                pool, keys, desk, settings, request_id, data.code[:32] or "-", public.client_address(request)
            )
        except REFUSALS as refused:
            exc = problem_of(refused)
            return await _status_page(request, pool, keys, settings, request_id, exc.status_code, _plain(exc))
        response = Redirect(f"/privacy/requests/{request_id}", status_code=303)
        if confirmed.type in EXPORTABLE:
            # Whoever entered the code gets the download in this browser: the one-time link travels in a
            # cookie scoped to this request's page, never in a message or a URL they did not ask for.
            expires_at = public.now() + timedelta(minutes=settings.public_code_minutes)
            async with pool.acquire() as conn:
                token = await verification.issue_link(conn, keys, request_id, expires_at)
            response.set_cookie(
                EXPORT_COOKIE,
                token,
                path=f"/privacy/requests/{request_id}",
                httponly=True,
                secure=settings.production,
                samesite="strict",
                max_age=settings.public_code_minutes * 60,
            )
        return response

    @get("/preferences")
    async def preferences_start(self, request: Request, settings: NamedDependency[Settings]) -> Template:
        return _page("privacy/preferences_start.html", request, settings)

    @post("/preferences", status_code=303)
    async def preferences_code_sent(
        self,
        request: Request,
        data: Annotated[IdentifierForm, Form],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        rules: NamedDependency[RecordRules],
        settings: NamedDependency[Settings],
    ) -> Response:
        region = canonical_region(data.region[:6]) or "ZZ"
        typed = hash_typed(data.kind, data.value, rules.lookup_hash)
        if typed is None:
            return _page(
                "privacy/preferences_start.html", request, settings, 422, error="Please check what you typed."
            )
        (kind, value, lookup_hash) = typed
        now = public.now()
        try:
            await public.limit(
                pool,
                keys,
                [
                    (public.client_address(request), settings.public_rate_per_address),
                    (b"identifier\0" + lookup_hash, settings.public_rate_per_identifier),
                ],
                now,
            )
        except REFUSALS as refused:
            exc = problem_of(refused)
            return _page(
                "privacy/preferences_start.html", request, settings, exc.status_code, error=_plain(exc)
            )
        async with pool.acquire() as conn, conn.transaction():
            token = await preferences.start(conn, keys, kind, value, lookup_hash, region, now)
        response = Redirect("/privacy/preferences/code", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            token,
            path="/privacy/preferences",
            httponly=True,
            secure=settings.production,
            samesite="strict",
            max_age=int(preferences.LIFETIME.total_seconds()),
        )
        return response

    @get("/preferences/code")
    async def preferences_code(self, request: Request, settings: NamedDependency[Settings]) -> Template:
        return _page("privacy/preferences_code.html", request, settings, code_minutes=30)

    @post("/preferences/code", status_code=303)
    async def preferences_verify(
        self,
        request: Request,
        data: Annotated[CodeForm, Form],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        rules: NamedDependency[RecordRules],
        policies: NamedDependency[Policies],
        settings: NamedDependency[Settings],
    ) -> Response:
        token = request.cookies.get(SESSION_COOKIE, "")[:100]
        async with pool.acquire() as conn, conn.transaction():
            left = await preferences.check_code(conn, keys, token, data.code[:32] or "-", public.now())
        if left is None:
            session = await _preference_session(request, pool, keys)
            if session is not None and (opted_out := _gpc_purposes(request, policies, session.region)):
                # Once, on sign-in: a later "Allow" on the same browser is consent given after the conflict
                # (regs 7025(c)(3)), and stands.
                current = await _current(pool, session)
                refusals = [(p, "denied") for p in opted_out if current.get(p) not in ("denied", "withdrawn")]
                if refusals:
                    try:
                        await _record(pool, keys, rules, settings, session, refusals, "gpc_signal")
                    except REFUSALS:
                        pass  # an erased person: the choices page says so when they act
            return Redirect("/privacy/preferences/choices", status_code=303)
        error = (
            f"That is not the code we sent ({left} tries left)."
            if left
            else "This code can no longer be used. Please start again for a new one."
        )
        return _page(
            "privacy/preferences_code.html",
            request,
            settings,
            422 if left else 409,
            error=error,
            code_minutes=30,
        )

    @get("/preferences/choices")
    async def preferences_choices(
        self,
        request: Request,
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        policies: NamedDependency[Policies],
        settings: NamedDependency[Settings],
    ) -> Response:
        session = await _preference_session(request, pool, keys)
        if session is None:
            return Redirect("/privacy/preferences", status_code=303)
        return await _choices_page(request, pool, keys, policies, settings, session)

    @post("/preferences/choices", status_code=303)
    async def preferences_save(
        self,
        request: Request,
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        rules: NamedDependency[RecordRules],
        policies: NamedDependency[Policies],
        settings: NamedDependency[Settings],
    ) -> Response:
        session = await _preference_session(request, pool, keys)
        if session is None:
            return Redirect("/privacy/preferences", status_code=303)
        form = await request.form()
        current = await _current(pool, session)
        changes = []
        for purpose in _purposes(policies):
            chosen = form.get(f"purpose-{purpose.id}")
            if chosen not in ("granted", "withdrawn"):
                continue
            shown = SHOWN_STATES.get(current.get(purpose.id, ""), "")
            if shown != SHOWN_STATES[chosen]:  # unchanged: nothing to record
                changes.append((purpose.id, chosen))
        saved = len(changes)
        if changes:
            try:
                await _record(pool, keys, rules, settings, session, changes, "form")
            except REFUSALS as refused:
                exc = problem_of(refused)
                # 409: the identifier belongs to a person erased at their request; they are not brought back.
                error = ERASED if exc.status_code == 409 else _plain(exc)
                return await _choices_page(
                    request, pool, keys, policies, settings, session, exc.status_code, error
                )
        return await _choices_page(request, pool, keys, policies, settings, session, saved=saved)


async def _status_page(
    request: Request,
    pool: asyncpg.Pool,
    keys: crypto.Keys,
    settings: Settings,
    request_id: UUID,
    status: int = 200,
    error: str | None = None,
) -> Template:
    try:
        found = await public.status(pool, request_id)
    except REFUSALS:
        return _page("privacy/index.html", request, settings, 404, error="We could not find that request.")
    export = None
    token = request.cookies.get(EXPORT_COOKIE, "")[:100]
    if token and found.type in EXPORTABLE:
        async with pool.acquire() as conn:
            export = await verification.link_state(conn, keys, token, request_id, public.now())
    return _page(
        "privacy/request_status.html" if swapped(request) else "privacy/request.html",
        request,
        settings,
        status,
        r=found,
        export=export,
        token=token,
        polling=found.status in STILL_WORKING,
        label=LABELS.get(found.type, found.type),
        status_words=STATUS_WORDS[found.status],
        code_minutes=settings.public_code_minutes,
        error=error,
    )


async def _record(
    pool: asyncpg.Pool,
    keys: crypto.Keys,
    rules: RecordRules,
    settings: Settings,
    session: preferences.Session,
    changes: list[tuple[str, str]],
    method: str,
) -> None:
    """The person's choices as consent records from the preference center, under the notice they were shown."""
    now = public.now()
    source = Source(
        system="consent-svc",
        touchpoint="preference_center",
        method=method,
        notice=Notice(id="privacy-notice", version=settings.brand_notice_version),
    )
    subject = SubjectIdentifiers(identifiers=[Identifier(type=session.kind, value=session.value)])
    records = [
        ConsentRecordIn(
            subject=subject,
            purpose=purpose,
            status=status,  # type: ignore[arg-type]
            collected_at=now,
            region=session.region,
            source=source,
        )
        for purpose, status in changes
    ]
    await record_batch(pool, keys, prepare_batch(ConsentBatch(records=records), rules, now), "privacy-center")


def _gpc_purposes(request: Request, policies: Policies, region: str) -> list[str]:
    """What a Global Privacy Control signal opts this person out of, where their law makes it their own opt-out
    (CCPA regs 7025(c)(1)); nothing without the signal or under another law."""
    if request.headers.get("sec-gpc", "").strip() != "1":
        return []
    today = public.now().date()
    gpc = policies.regime_on(region, today)[0].gpc
    if gpc is None or not gpc.binds_consumer or today < gpc.honour_from:
        return []
    return gpc.purposes


def _purposes(policies: Policies) -> list:
    return [p for p in policies.purposes.purposes if p.id != "strictly_necessary"]


async def _preference_session(
    request: Request, pool: asyncpg.Pool, keys: crypto.Keys
) -> preferences.Session | None:
    token = request.cookies.get(SESSION_COOKIE, "")[:100]
    if not token:
        return None
    async with pool.acquire() as conn:
        found = await preferences.get(conn, keys, token, public.now())
    return found if found is not None and found.verified else None


async def _current(pool: asyncpg.Pool, session: preferences.Session) -> dict[str, str]:
    async with pool.acquire() as conn:
        subjects = await consent_store.subjects_by_hash(conn, [session.lookup_hash])
        if not subjects:
            return {}
        rows = await conn.fetch(
            "SELECT purpose, status FROM consent_state WHERE subject_id = $1", next(iter(subjects.values()))
        )
    return {row["purpose"]: row["status"] for row in rows}


async def _choices_page(
    request: Request,
    pool: asyncpg.Pool,
    keys: crypto.Keys,
    policies: Policies,
    settings: Settings,
    session: preferences.Session,
    status: int = 200,
    error: str | None = None,
    saved: int | None = None,
) -> Template:
    current = await _current(pool, session)
    rows = [(p, SHOWN_STATES.get(current.get(p.id, ""), "not chosen yet")) for p in _purposes(policies)]
    return _page(
        "privacy/preferences_choices.html",
        request,
        settings,
        status,
        rows=rows,
        gpc_purposes=[
            p.title for p in _purposes(policies) if p.id in _gpc_purposes(request, policies, session.region)
        ],
        error=error,
        saved=saved,
        notice_version=settings.brand_notice_version,
    )
