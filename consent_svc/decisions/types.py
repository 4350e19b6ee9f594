"""Wire types of the consent check."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar
from uuid import UUID

import msgspec

from consent_svc.consents.types import AwareDatetime, Identifiers, RegionCode
from consent_svc.decisions.engine import ConsentState, Context, Reason

MAX_BATCH_ITEMS = 10_000
PurposeName = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
PolicyVersion = Annotated[
    str, msgspec.Meta(pattern=r"^[A-Za-z0-9.+_-]{1,80}$", description="e.g. 2026-11-23+3f2a9c1b7d4e")
]


class SubjectRef(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    """Exactly one of `identifiers` (as in consent records) or `id` (a subject id the ledger gave)."""

    # __post_init__ below enforces it; the OpenAPI schema says so from this (openapi.StrictStructs).
    exactly_one_of: ClassVar[tuple[str, ...]] = ("identifiers", "id")

    identifiers: Identifiers | None = None
    id: UUID | None = None

    def __post_init__(self) -> None:
        if (self.identifiers is None) == (self.id is None):
            raise ValueError("give exactly one of `identifiers` or `id`")


class CheckRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    subject: SubjectRef
    purpose: PurposeName
    region: RegionCode | None = None
    """ISO 3166-1 alpha-2 or ISO 3166-2; `ZZ` or absent: unknown, and the strictest default applies."""
    context: Context = Context()


class BatchCheckRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    items: Annotated[list[CheckRequest], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ITEMS)]


class ReplayRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False):
    subject: SubjectRef
    purpose: PurposeName
    at: AwareDatetime
    """The moment to answer for."""
    region: RegionCode | None = None
    context: Context = Context()
    policy_version: PolicyVersion | None = None
    """A stored policy version; default: the one in force at `at`."""
    as_known: bool = False
    """Only the records the service had received by `at` (what it would have answered then); by default
    every record collected by `at`, including those that arrived later (the legal state at that time)."""


class PolicyRef(msgspec.Struct, frozen=True, gc=False):
    regime: str
    version: str
    """The policy set's version (`GET /v1/policies/{version}` shows it in full)."""
    regime_version: str


class Decision(msgspec.Struct, frozen=True, gc=False):
    decision_id: UUID
    allowed: bool
    reason: Reason
    purpose: str
    region: str
    policy: PolicyRef
    consent_record_id: UUID | None
    evaluated_at: datetime


class BatchDecisions(msgspec.Struct, frozen=True, gc=False):
    results: list[Decision]


class ReplayedDecision(msgspec.Struct, frozen=True):
    allowed: bool
    reason: Reason
    purpose: str
    region: str
    policy: PolicyRef
    consent_record_id: UUID | None
    at: datetime
    as_known: bool
    replay: bool = True
    """Always true: a replay is not a live decision and is not recorded as one."""


class RecordBasis(msgspec.Struct, frozen=True):
    """The consent record a decision rested on."""

    id: UUID
    status: str
    collected_at: datetime
    received_at: datetime
    region: str
    source: dict[str, Any]


class RecordedDecision(msgspec.Struct, frozen=True):
    decision_id: UUID
    decided_at: datetime
    subject_id: UUID | None
    """Null when the ledger knew no subject for the identifiers asked about."""
    purpose: str
    region: str
    context: Context
    allowed: bool
    reason: Reason
    explanation: str
    policy: PolicyRef
    consent_record: RecordBasis | None
    api_key_id: str


class CheckRow(msgspec.Struct, frozen=True, gc=False, array_like=True):
    """A validated check, ready for the database: identifiers already reduced to look-up hashes."""

    hashes: list[bytes]
    subject_id: UUID | None
    purpose: str
    region: str
    context: Context
    api_key_id: str


class Check(msgspec.Struct, gc=False):
    """One check on its round trip: what was asked, what the ledger holds, what was decided."""

    row: CheckRow
    subject_id: UUID | None = None
    """The subject the ledger knows by the check's identifiers or id; None: unknown to the ledger."""
    states: dict[str, ConsentState] = {}
    """Its current consent for the purposes the check needs."""
    conflict: bool = False
    """Its identifiers name two different subjects: it has no answer."""
    decision: Decision | None = None
