"""What every server-rendered page shares, the console's and the privacy center's: the brand from settings,
form bodies, htmx fragments, rendering."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from litestar import Request
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.plugins.htmx import HTMXRequest
from litestar.response import Template

from consent_svc.settings import Settings

Form = Body(media_type=RequestEncodingType.URL_ENCODED)


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


def page(name: str, settings: Settings, user: Any, status: int = 200, /, **context: Any) -> Template:
    """`user`: the signed-in staff member, or None. Positional-only parameters, so that a template's own `status`
    or `user` cannot collide with them."""
    return Template(
        template_name=name,
        context={"brand": brand(settings), "user": user, "today": now().date(), **context},
        status_code=status,
    )
