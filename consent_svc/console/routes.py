"""The legal console (`/console`): sign-in, the dashboard and the request queue, server-rendered.

Pages work without JavaScript. Every form carries a CSRF token (Litestar's CSRF middleware on this router);
the session cookie is HttpOnly, SameSite=Strict, and Secure outside local mode.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template

from consent_svc import crypto
from consent_svc.audit import store as audit_store
from consent_svc.console import dashboard, users
from consent_svc.console.session import COOKIE
from consent_svc.errors import REFUSALS, ProblemError, problem_of
from consent_svc.requests import documents, verification
from consent_svc.requests import store as request_store
from consent_svc.requests.desk import Desk
from consent_svc.requests.types import SubjectRequest
from consent_svc.settings import Settings
from consent_svc.web.pages import Form, now, page, swapped

SIGN_INS_PER_ADDRESS = 30  # per hour, besides the per-user lockout
STATUSES = ("received", "verifying", "verified", "in_progress", "completed", "rejected")
ACTIONS = {
    "verify": "Mark verified",
    "extend": "Extend the deadline",
    "complete": "Complete",
    "reject": "Reject",
}


class SignInForm(msgspec.Struct):
    email: str = ""
    password: str = ""


class ReasonForm(msgspec.Struct):
    reason: str = ""


class ConsoleController(Controller):
    path = "/console"
    include_in_schema = False

    @get("/login", opt={"signed_out": True})
    async def loginpage(self, settings: NamedDependency[Settings]) -> Template:
        return page("console/login.html", settings, None)

    @post("/login", status_code=303, opt={"signed_out": True})
    async def login(
        self,
        request: Request,
        data: Annotated[SignInForm, Form],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        settings: NamedDependency[Settings],
    ) -> Response:
        at = now()
        address = b"console sign-in\0" + (request.client.host if request.client else "unknown").encode()
        async with pool.acquire() as conn:
            if await verification.hit(conn, keys, address, at) > SIGN_INS_PER_ADDRESS:
                return page(
                    "console/login.html", settings, None, 429, error="Too many attempts. Try again later."
                )
        async with pool.acquire() as conn, conn.transaction():
            outcome = await users.sign_in(conn, keys, data.email[:320], data.password[:1000], at)
            if isinstance(outcome, users.SignInRefused):
                body = {
                    "locked": outcome.locked,
                    "user_id": str(outcome.user_id) if outcome.user_id else None,
                }
                entry = audit_store.entry("console.sign_in_refused", "anonymous", body)
            else:
                user = outcome[1]
                entry = audit_store.entry("console.signed_in", f"user:{user.user_id}", {"role": user.role})
            await audit_store.append(conn, [entry])
        if isinstance(outcome, users.SignInRefused):
            error = (
                "This account is locked after too many failed attempts. Try again in 15 minutes."
                if outcome.locked
                else "Wrong e-mail or password."
            )
            return page("console/login.html", settings, None, 401, error=error)
        token = outcome[0]
        response = Redirect("/console", status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            path="/console",
            httponly=True,
            secure=settings.production,
            samesite="strict",
            max_age=int(users.ABSOLUTE.total_seconds()),
        )
        return response

    @post("/logout", status_code=303, opt={"signed_out": True})
    async def logout(
        self, request: Request, pool: NamedDependency[asyncpg.Pool], keys: NamedDependency[crypto.Keys]
    ) -> Response:
        token = request.cookies.get(COOKIE)
        if token and len(token) <= 100:
            async with pool.acquire() as conn, conn.transaction():
                user = await users.session(conn, keys, token, now())
                await users.sign_out(conn, keys, token)
                if user is not None:
                    entry = audit_store.entry("console.signed_out", f"user:{user.user_id}", {})
                    await audit_store.append(conn, [entry])
        response = Redirect("/console/login", status_code=303)
        response.delete_cookie(COOKIE, path="/console")
        return response

    @get("/")
    async def dashboard(
        self,
        user: NamedDependency[users.SignedIn],
        pool: NamedDependency[asyncpg.Pool],
        settings: NamedDependency[Settings],
    ) -> Template:
        today = now().date()
        async with pool.acquire() as conn:
            open_requests = await request_store.page(
                conn, today, None, False, None, None, 500, open_only=True
            )
            shown = await dashboard.figures(conn, now())
        week = [r for r in open_requests if r.due_at <= today + timedelta(days=7)]
        counts = {
            "overdue": sum(r.overdue for r in open_requests),
            "due_this_week": sum(not r.overdue for r in week),
            "open": len(open_requests),
        }
        return page(
            "console/dashboard.html",
            settings,
            user,
            counts=counts,
            requests=week,
            checks_chart=dashboard.stacked_bars(shown.checks, "Consent checks per hour, last 24 hours (UTC)"),
            consent_charts=[
                (
                    purpose,
                    dashboard.stacked_bars(
                        bars, f"{purpose}: consent records per day, last 14 days", 120, 480
                    ),
                )
                for purpose, bars in shown.consents
            ],
            reasons=shown.denial_reasons,
            failing=shown.failing,
        )

    @get("/requests")
    async def queue(
        self,
        user: NamedDependency[users.SignedIn],
        request: Request,
        pool: NamedDependency[asyncpg.Pool],
        settings: NamedDependency[Settings],
        status: FromQuery[str | None] = None,
    ) -> Template:
        status = status if status in STATUSES else None
        async with pool.acquire() as conn:
            found = await request_store.page(
                conn, now().date(), status, False, None, None, 500, open_only=status is None
            )
        name = "console/request_table.html" if swapped(request) else "console/queue.html"
        return page(name, settings, user, requests=found, statuses=STATUSES, chosen=status)

    @get("/requests/{request_id:uuid}")
    async def requestpage(
        self,
        user: NamedDependency[users.SignedIn],
        request_id: FromPath[UUID],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        settings: NamedDependency[Settings],
    ) -> Template:
        return await _requestpage(pool, keys, settings, user, request_id)

    @post("/requests/{request_id:uuid}/{action:str}", status_code=303)
    async def act(
        self,
        user: NamedDependency[users.SignedIn],
        request_id: FromPath[UUID],
        action: FromPath[str],
        data: Annotated[ReasonForm, Form],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        settings: NamedDependency[Settings],
        desk: NamedDependency[Desk],
    ) -> Response:
        if not user.may("requests:manage"):
            return await _requestpage(
                pool, keys, settings, user, request_id, 403, "Your role cannot act on requests."
            )
        reason = data.reason.strip()[:500] or None
        actor = f"user:{user.user_id}"
        try:
            async with pool.acquire() as conn, conn.transaction():
                if action == "verify":
                    await desk.verify(
                        conn, request_id, actor, reason or "verified in the console", None, now()
                    )
                elif action == "extend" and reason:
                    await desk.extend(conn, request_id, actor, reason, now())
                elif action == "reject" and reason:
                    await desk.reject(conn, request_id, actor, reason, now())
                elif action == "complete":
                    await desk.complete(conn, request_id, actor, reason, now())
                else:
                    raise ProblemError("A reason is needed." if action in ACTIONS else "Unknown action.")
        except REFUSALS as refused:
            exc = problem_of(refused)
            return await _requestpage(pool, keys, settings, user, request_id, exc.status_code, exc.detail)
        return Redirect(f"/console/requests/{request_id}", status_code=303)

    @get("/requests/{request_id:uuid}/receipt")
    async def receipt(
        self,
        request_id: FromPath[UUID],
        pool: NamedDependency[asyncpg.Pool],
        signer: NamedDependency[crypto.Signer],
    ) -> Response:
        async with pool.acquire() as conn:
            row = await request_store.get(conn, request_id, now().date())
            if row is None or row.request.status not in ("completed", "rejected"):
                return Response("No receipt for this request.", status_code=404, media_type="text/plain")
            signed = await documents.receipt(conn, row, signer)
        return Response(
            msgspec.json.encode(signed),
            media_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="receipt-{request_id}.json"'},
        )


def _allowed(action: str, request: SubjectRequest) -> bool:
    """The forms worth showing: the transitions the lifecycle allows from here (the desk still decides)."""
    if action == "verify":
        return request.status in ("received", "verifying")
    if action == "complete":
        return request.status in ("verified", "in_progress")
    if action == "extend":
        return not request.extended
    return True


async def _requestpage(
    pool: asyncpg.Pool,
    keys: crypto.Keys,
    settings: Settings,
    user: users.SignedIn,
    request_id: UUID,
    status: int = 200,
    error: str | None = None,
) -> Template:
    async with pool.acquire() as conn:
        found: SubjectRequest | None = await request_store.detailed(conn, keys, request_id, now().date())
        names = await users.actor_names(conn, keys, {h.actor for h in found.history} if found else set())
    if found is None:
        return page("console/queue.html", settings, user, 404, requests=[], statuses=STATUSES, chosen=None)
    return page(
        "console/request.html",
        settings,
        user,
        status,
        r=found,
        names=names,
        error=error,
        actions=[(a, label) for a, label in ACTIONS.items() if _allowed(a, found)],
        may_manage=user.may("requests:manage"),
    )
