"""Wire types of data-subject requests: intake, transitions, the privacy team's views, systems, receipts."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

from consent_svc.consents.types import AwareDatetime, Identifiers, RegionCode

RequestType = Literal[
    "access", "deletion", "correction", "portability", "opt_out_of_sale", "limit_sensitive", "appeal"
]
Status = Literal["received", "verifying", "verified", "in_progress", "completed", "rejected"]
Channel = Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,31}$", examples=["web", "mail", "phone"])]
Reason = Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=r"^[^\x00]*\S[^\x00]*$")]
SystemName = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


class RequestSubject(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    identifiers: Identifiers


class RequestIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: RequestType
    subject: RequestSubject
    region: RegionCode
    channel: Channel
    details: (
        Annotated[dict[str, Any], msgspec.Meta(description="What the person asked, as they put it")] | None
    ) = None
    received_at: AwareDatetime | None = None
    """When the request arrived, if earlier by another channel (mail, phone); never in the future."""
    appeals: UUID | None = None
    """For an `appeal`: the request it appeals."""


class PublicRequestIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    type: RequestType
    subject: RequestSubject
    region: RegionCode
    details: dict[str, Any] | None = None
    appeals: UUID | None = None


class VerifyIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Reason
    verified_at: AwareDatetime | None = None
    """When the identity information arrived, if earlier (it starts the UK clock)."""


class ReasonIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Reason


class CompleteIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    reason: Reason | None = None


class CodeIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    code: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


class HistoryEntry(msgspec.Struct, frozen=True):
    at: datetime
    action: str
    from_status: Status | None
    to_status: Status
    actor: str
    reason: str | None


class SystemProgress(msgspec.Struct, frozen=True):
    system_id: UUID
    name: str
    notified_at: datetime
    confirmed_at: datetime | None


class SubjectRequest(msgspec.Struct, frozen=True):
    id: UUID
    type: RequestType
    status: Status
    region: str
    regime: str
    policy_version: str
    channel: str
    received_at: datetime
    due_at: date
    """The last day of the legal period (inclusive), counted as the region's law says."""
    acknowledge_by: date | None
    extended: bool
    overdue: bool
    verified_at: datetime | None
    closed_at: datetime | None
    appeals: UUID | None
    subject_id: UUID | None
    details: dict[str, Any] | None = None
    """What the person asked, as they put it (gone once the subject is erased)."""
    history: list[HistoryEntry] = []
    systems: list[SystemProgress] = []


class RequestPage(msgspec.Struct, frozen=True):
    requests: list[SubjectRequest]
    next_cursor: str | None


class PublicRequestAccepted(msgspec.Struct, frozen=True):
    """The same fields whether or not the identifiers are known."""

    id: UUID
    type: RequestType
    status: Status
    received_at: datetime
    due_at: date
    next_step: str


class PublicRequestStatus(msgspec.Struct, frozen=True):
    id: UUID
    type: RequestType
    status: Status
    received_at: datetime
    due_at: date


class ExportLink(msgspec.Struct, frozen=True):
    url: str
    """Relative to the service: one download, then gone."""
    expires_at: datetime


class SystemIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: SystemName
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    request_types: Annotated[list[RequestType], msgspec.Meta(min_length=1, max_length=7)]


class System(msgspec.Struct, frozen=True):
    id: UUID
    name: str
    url: str
    request_types: list[str]
    subscription_id: UUID
    api_key_id: str
    created_at: datetime


class SystemCreated(msgspec.Struct, frozen=True):
    id: UUID
    name: str
    url: str
    request_types: list[str]
    subscription_id: UUID
    secret: str
    """Verifies the signature of the events sent to this system (Standard Webhooks); shown once."""
    key: str
    """This system's own API key, to confirm what it did; shown once."""


class ExportedIdentifier(msgspec.Struct, frozen=True):
    type: str
    value: str


class Receipt(msgspec.Struct, frozen=True, omit_defaults=True):
    """What was asked, when, what was done, by whom, and when each system confirmed: signed as its canonical
    JSON (sorted keys, compact) with the audit log's Ed25519 key."""

    request_id: UUID
    type: str
    region: str
    regime: str
    policy_version: str
    status: str
    received_at: datetime
    due_at: date
    extended: bool
    closed_at: datetime | None
    subject_ref: list[str]
    """Keyed hashes of the identifiers (hex): someone holding them can match the receipt; nobody can read them."""
    history: list[HistoryEntry]
    systems: list[SystemProgress]
    erased_subject: UUID | None = None
    issued_at: datetime | None = None


class SignedReceipt(msgspec.Struct, frozen=True):
    receipt: Receipt
    signature: bytes
    """Ed25519 over the receipt's canonical JSON (msgspec: sorted keys, no spaces), base64."""
    key_id: str
    public_key: bytes
    """The audit log's public key (also at GET /v1/audit/public-key)."""
