"""Wire types of CMP sync: sources, and the messages they send (records, TCF and GPP strings, Didomi events)."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

import msgspec

from consent_svc.consents.types import AwareDatetime, ConsentBatch, RegionCode, SubjectIdentifiers

SOURCE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
SourceName = Annotated[
    str, msgspec.Meta(pattern=SOURCE_NAME.pattern, description="lower-case letters, digits, `-`, `_`")
]
SourceKind = Literal["generic", "didomi"]


class SourceIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    name: SourceName
    kind: SourceKind = "generic"
    default_region: RegionCode | None = None
    """For events that name no region (GPP strings)."""


class CmpSource(msgspec.Struct, frozen=True):
    """A registered CMP source (not a consent record's `source`, which says where a record was collected)."""

    name: str
    kind: str
    default_region: str | None
    created_at: datetime
    disabled_at: datetime | None
    secrets: int
    """Secrets that verify now (two during a rotation's grace period)."""


class SourceSecret(msgspec.Struct, frozen=True):
    """Shown once: the service keeps it only wrapped by its master key."""

    name: str
    secret: str
    previous_secret_retires_at: datetime | None = None


class ConsentRecordsEvent(
    msgspec.Struct, frozen=True, tag_field="type", tag="consent.records", forbid_unknown_fields=True
):
    data: ConsentBatch


class TcfString(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subject: SubjectIdentifiers
    tc_string: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
    region: RegionCode
    collected_at: AwareDatetime | None = None
    """When the choice was made; default: the string's LastUpdated (CMPs round it to the day)."""


class TcfStringEvent(
    msgspec.Struct, frozen=True, tag_field="type", tag="tcf.string", forbid_unknown_fields=True
):
    data: TcfString


class GppString(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    subject: SubjectIdentifiers
    gpp_string: Annotated[str, msgspec.Meta(min_length=1, max_length=20_000)]
    region: RegionCode | None = None
    """Default: the source's `default_region`."""
    collected_at: AwareDatetime | None = None
    """When the choice was made; default: when the message arrived (a GPP string carries no time)."""


class GppStringEvent(
    msgspec.Struct, frozen=True, tag_field="type", tag="gpp.string", forbid_unknown_fields=True
):
    data: GppString


class DidomiPurpose(msgspec.Struct, frozen=True):
    id: Annotated[str, msgspec.Meta(max_length=200)]
    enabled: bool | None = None


class DidomiConsents(msgspec.Struct, frozen=True):
    purposes: Annotated[list[DidomiPurpose], msgspec.Meta(max_length=500)] = []
    tcfcs: str | None = None


class DidomiUser(msgspec.Struct, frozen=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=320)] | None = None
    organization_user_id: Annotated[str, msgspec.Meta(min_length=1, max_length=320)] | None = None
    country: str | None = None
    region: str | None = None


class DidomiEntity(msgspec.Struct, frozen=True):
    """Didomi's consent event (Consents API v2 event schema); fields this service does not use are ignored."""

    user: DidomiUser
    id: str | None = None
    created_at: AwareDatetime | None = None
    regulation: str | None = None
    consents: DidomiConsents = DidomiConsents()


class DidomiParameters(msgspec.Struct, frozen=True):
    entity: DidomiEntity | None = None
    new_entity: DidomiEntity | None = None


class DidomiEventCreated(msgspec.Struct, frozen=True, tag_field="type", tag="event.created"):
    """Didomi's own webhook format (sources of kind `didomi`)."""

    parameters: DidomiParameters
    regulation: str | None = None


class DidomiEventUpdated(msgspec.Struct, frozen=True, tag_field="type", tag="event.updated"):
    parameters: DidomiParameters
    regulation: str | None = None


class DidomiNoChoice(msgspec.Struct, frozen=True, tag_field="type"):
    """Didomi posts every event of the organisation to its webhook; these carry no consent choice. Taken (202,
    audited as received) so that Didomi does not retry them, and no record made."""


class DidomiEventDeleted(DidomiNoChoice, tag="event.deleted"):
    pass


class DidomiUserCreated(DidomiNoChoice, tag="user.created"):
    pass


class DidomiUserUpdated(DidomiNoChoice, tag="user.updated"):
    pass


class DidomiUserDeleted(DidomiNoChoice, tag="user.deleted"):
    pass


DidomiEvent = (
    DidomiEventCreated
    | DidomiEventUpdated
    | DidomiEventDeleted
    | DidomiUserCreated
    | DidomiUserUpdated
    | DidomiUserDeleted
)
InboundEvent = ConsentRecordsEvent | TcfStringEvent | GppStringEvent | DidomiEvent
