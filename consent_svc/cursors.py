"""Keyset cursors of paginated listings: an opaque token of (time, id), the last row a page returned."""

from __future__ import annotations

import base64
from datetime import datetime
from uuid import UUID

import msgspec

from consent_svc.exceptions import MAX_YEAR, MIN_YEAR

# The largest sequence number (a bigint) a cursor or path may name: larger ones would fail in PostgreSQL.
MAX_SEQ = 2**63 - 1


def encode(at: datetime, row_id: UUID) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode([at, row_id])).decode().rstrip("=")


def decode(text: str) -> tuple[datetime, UUID]:
    """ValueError on anything that is not a cursor we issued."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        at, row_id = msgspec.json.decode(raw, type=tuple[datetime, UUID])
    except (ValueError, msgspec.DecodeError) as exc:
        raise ValueError("not a valid cursor") from exc
    if at.tzinfo is None or not MIN_YEAR <= at.year <= MAX_YEAR:
        raise ValueError("not a valid cursor")
    return at, row_id
