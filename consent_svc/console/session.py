"""The console's staff session: its cookie, and the check that a request carries a live one."""

from __future__ import annotations

import asyncpg
from litestar import Request, Response
from litestar.response import Redirect

from consent_svc import crypto
from consent_svc.console import users
from consent_svc.web.pages import now

COOKIE = "consent_console"


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to sign in."""


def sign_in_redirect(request: Request, exc: Exception) -> Response:
    return Redirect("/console/login", status_code=303)


async def signed_in(request: Request, pool: asyncpg.Pool, keys: crypto.Keys) -> users.SignedIn:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        raise SignInRequired()
    async with pool.acquire() as conn:
        user = await users.session(conn, keys, token, now())
    if user is None:
        raise SignInRequired()
    return user
