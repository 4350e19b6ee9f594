"""Wire types of the ledger: what callers send and what they get back.

Structs on the ingest path are `gc=False` (msgspec perf tips): they never form reference cycles, and a
10,000-record batch would otherwise hand the cyclic collector tens of thousands of objects to scan."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

import msgspec

MAX_RECORDS_PER_BATCH = 10_000

AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]
# No NUL: PostgreSQL text and jsonb cannot hold it.
ShortText = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=r"^[^\x00]*$")]
IdentifierKind = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(email|phone|customer_id|device_id|cookie_id|loyalty_id|x-[a-z0-9][a-z0-9_.-]{0,62})$",
        description="email, phone, customer_id, device_id, cookie_id, loyalty_id, or a custom `x-...` type",
    ),
]
RegionCode = Annotated[
    str,
    msgspec.Meta(
        min_length=2,
        max_length=6,
        description="ISO 3166-1 alpha-2 (`DE`) or ISO 3166-2 (`US-CA`); `ZZ` means unknown",
        examples=["US-CA"],
    ),
]
Status = Literal["granted", "denied", "withdrawn"]
Actor = Literal["subject", "parent", "authorized_agent"]


class Identifier(msgspec.Struct, gc=False, frozen=True, forbid_unknown_fields=True):
    type: IdentifierKind
    value: Annotated[str, msgspec.Meta(min_length=1, max_length=320)]
    default_region: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z]{2}$")] | None = None
    """For a phone number written in national form: the country it belongs to."""


Identifiers = Annotated[list[Identifier], msgspec.Meta(min_length=1, max_length=20)]


class SubjectIdentifiers(msgspec.Struct, gc=False, frozen=True, forbid_unknown_fields=True):
    identifiers: Identifiers


class Notice(msgspec.Struct, gc=False, frozen=True, forbid_unknown_fields=True):
    id: ShortText
    version: ShortText


class Source(msgspec.Struct, gc=False, frozen=True, forbid_unknown_fields=True):
    system: ShortText
    touchpoint: ShortText | None = None
    method: ShortText | None = None
    notice: Notice | None = None
    cmp: ShortText | None = None
    actor: Actor = "subject"


class ConsentRecordIn(msgspec.Struct, gc=False, frozen=True, forbid_unknown_fields=True):
    subject: SubjectIdentifiers
    purpose: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    status: Status
    collected_at: AwareDatetime
    region: RegionCode
    source: Source
    expires_at: AwareDatetime | None = None
    proof: dict[str, Any] | None = None
    """Evidence of how the choice was made (form id, UI text hash, CMP string...); stored encrypted."""


class ConsentBatch(msgspec.Struct, gc=False, frozen=True, forbid_unknown_fields=True):
    records: Annotated[list[ConsentRecordIn], msgspec.Meta(min_length=1, max_length=MAX_RECORDS_PER_BATCH)]


class RecordReceipt(msgspec.Struct, gc=False, frozen=True):
    id: UUID
    subject_id: UUID
    received_at: datetime
    duplicate: bool


class BatchReceipt(msgspec.Struct, gc=False, frozen=True):
    records: list[RecordReceipt]


class LookupResult(msgspec.Struct, frozen=True):
    subject_id: UUID


class MaskedIdentifier(msgspec.Struct, frozen=True):
    type: str
    masked: str


class PurposeState(msgspec.Struct, frozen=True):
    purpose: str
    status: Status
    record_id: UUID
    collected_at: datetime
    received_at: datetime
    region: str
    source: Source
    expires_at: datetime | None


class SubjectView(msgspec.Struct, frozen=True):
    subject_id: UUID
    created_at: datetime
    identifiers: list[MaskedIdentifier]
    consents: list[PurposeState]


class ConsentRecordOut(msgspec.Struct, frozen=True):
    id: UUID
    purpose: str
    status: Status
    collected_at: datetime
    received_at: datetime
    region: str
    source: Source
    expires_at: datetime | None
    proof: dict[str, Any] | None


class ConsentHistory(msgspec.Struct, frozen=True):
    records: list[ConsentRecordOut]
    next_cursor: str | None


class ConsentChanged(msgspec.Struct, frozen=True, gc=False):
    """`consent.changed`: a record became the subject's current consent for a purpose. Names the subject by its
    pseudonymous id only: a receiver maps it with POST /v1/subjects/lookup from identifiers it already holds."""

    subject_id: UUID
    purpose: str
    status: str
    record_id: UUID
    collected_at: datetime
    expires_at: datetime | None
    region: str
    source: Source
