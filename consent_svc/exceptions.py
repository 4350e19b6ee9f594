"""What the domains refuse, apart from HTTP: the ledger, the request desk, CMP intake, the importer and the
consent check raise these, and `errors.py` answers each kind with its RFC 9457 problem, once, at the edge (as
procrastinate's `exceptions.py` and litestar-fullstack's `lib/exceptions.py` keep them apart)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import msgspec


class FieldError(msgspec.Struct, frozen=True):
    """One bad field of what was given, named by its path (`records[3].purpose`)."""

    field: str
    message: str


# Far enough from datetime's limits that no UTC offset overflows, wide enough for any real consent.
MIN_YEAR, MAX_YEAR = 1900, 9000
OUT_OF_RANGE = f"must be between the years {MIN_YEAR} and {MAX_YEAR}"


def out_of_range(instants: Iterable[tuple[str, datetime | None]]) -> list[FieldError]:
    """The named instants (None: not given) outside the years MIN_YEAR to MAX_YEAR."""
    return [
        FieldError(name, OUT_OF_RANGE)
        for name, at in instants
        if at is not None and not MIN_YEAR <= at.year <= MAX_YEAR
    ]


class ServiceError(Exception):
    """A refusal: what is wrong (`detail`), a short `title`, and the bad fields where there are some."""

    default_title = "Refused"

    def __init__(self, detail: str = "", *, title: str | None = None, errors: list[FieldError] | None = None):
        self.errors = errors or []
        self.detail = detail or "; ".join(f"{e.field}: {e.message}" for e in self.errors)
        self.title = title or self.default_title
        super().__init__(self.detail)


class Invalid(ServiceError):
    """What was given is not valid; nothing was done."""

    default_title = "The request is not valid"


class Absent(ServiceError):
    """What was named does not exist (or is not the caller's to see)."""

    default_title = "Not found"


class Conflicting(ServiceError):
    """What was asked contradicts what is stored: two subjects, an illegal transition, a reused key."""

    default_title = "Conflict"


class Erased(ServiceError):
    """What was asked for was erased."""

    default_title = "Gone"


class Unrecorded(ServiceError):
    """It could not be stored now, so nothing was done; a retry may succeed."""

    default_title = "Service unavailable"
