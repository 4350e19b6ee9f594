"""Record builders shared by the ledger tests."""

from __future__ import annotations

from typing import Any


def record(
    email: str | None = "ann@example.com",
    purpose: str = "email_marketing",
    status: str = "granted",
    at: str = "2026-11-20T10:00:00Z",
    region: str = "US-CA",
    identifiers: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "subject": {
            "identifiers": identifiers if identifiers is not None else [{"type": "email", "value": email}]
        },
        "purpose": purpose,
        "status": status,
        "collected_at": at,
        "region": region,
        "source": {
            "system": "shop-web",
            "touchpoint": "checkout",
            "method": "checkbox",
            "notice": {"id": "privacy-notice", "version": "2026-09"},
        },
        **extra,
    }


def batch(*records: dict[str, Any]) -> dict[str, Any]:
    return {"records": list(records)}
