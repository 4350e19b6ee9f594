"""What every server-rendered page shares: the brand from settings, the console's session check, rendering."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar import Request, Response
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Redirect, Template

from consent_svc import crypto
from consent_svc.console import users
from consent_svc.settings import Settings

COOKIE = "consent_console"
Form = Body(media_type=RequestEncodingType.URL_ENCODED)


class SignInRequired(Exception):
    """No valid session: the page answers with a redirect to sign in."""


def sign_in_redirect(request: Request, exc: Exception) -> Response:
    return Redirect("/console/login", status_code=303)


def swapped(request: Request) -> bool:
    """An htmx swap asks for only the fragment it replaces; anything else, a history reload too, gets the page."""
    htmx = request.htmx if isinstance(request, HTMXRequest) else None
    return bool(htmx) and not htmx.history_restore_request


def now() -> datetime:
    return datetime.now(UTC)


def brand(settings: Settings) -> dict[str, str]:
    """Text a business changes lives in settings, not in templates."""
    return {
        "name": settings.brand_name,
        "contact": settings.brand_contact,
        "notice_url": settings.brand_notice_url,
        "color": settings.brand_color,
    }


async def signed_in(request: Request, pool: asyncpg.Pool, keys: crypto.Keys) -> users.SignedIn:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        raise SignInRequired()
    async with pool.acquire() as conn:
        user = await users.session(conn, keys, token, now())
    if user is None:
        raise SignInRequired()
    return user


def page(
    name: str, settings: Settings, user: users.SignedIn | None, status: int = 200, /, **context: Any
) -> Template:
    """Positional-only parameters, so that a template's own `status` or `user` cannot collide with them."""
    return Template(
        template_name=name,
        context={"brand": brand(settings), "user": user, "today": now().date(), **context},
        status_code=status,
    )
