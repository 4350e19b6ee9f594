"""The console's staff session: its cookie, and the guard on the console's router that lets a page through only
with a live one (Litestar guards run before the handler, so no handler can forget it)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from litestar.response import Redirect

from consent_svc import crypto
from consent_svc.console import users
from consent_svc.web.pages import now

COOKIE = "consent_console"


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to sign in."""


def sign_in_redirect(request: Request, exc: Exception) -> Response:
    return Redirect("/console/login", status_code=303)


async def signed_in(connection: ASGIConnection, pool: asyncpg.Pool, keys: crypto.Keys) -> users.SignedIn:
    token = connection.cookies.get(COOKIE)
    if not token or len(token) > 100:
        raise SignInRequired()
    async with pool.acquire() as conn:
        user = await users.session(conn, keys, token, now())
    if user is None:
        raise SignInRequired()
    return user


def session_guard(keys: crypto.Keys) -> Callable[[ASGIConnection, BaseRouteHandler], Awaitable[None]]:
    """Every console page needs a signed-in staff member, but those whose handler says `opt={"signed_out": True}`
    (signing in and out); the member is then the `user` dependency."""

    async def guard(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
        if not handler.opt.get("signed_out"):
            connection.state.user = await signed_in(connection, connection.app.state.pool, keys)

    return guard


def current_user(request: Request) -> users.SignedIn:
    """The staff member the guard found (the `user` dependency of console pages)."""
    return request.state.user
