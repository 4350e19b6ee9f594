"""Wire types of CMP sources and inbound events."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

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


class Source(msgspec.Struct, frozen=True):
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


# Outbound: what a subscription may ask for. Families (`request.*`) match every event of that prefix, including
# ones added later.
EVENT_TYPES = (
    "consent.changed",
    "subject.erased",
    "request.received",
    "request.verification_requested",
    "request.verified",
    "request.export_ready",
    "request.extended",
    "request.due_soon",
    "request.overdue",
    "request.completed",
    "request.rejected",
    # To the downstream systems that handle the type only (sealed, with the identifiers they act on).
    "request.deletion_requested",
    "request.access_requested",
    "request.correction_requested",
    "request.portability_requested",
    "request.opt_out_of_sale_requested",
    "request.limit_sensitive_requested",
    "request.appeal_requested",
)
EVENT_FAMILIES = frozenset(name.split(".")[0] + ".*" for name in EVENT_TYPES)

EventPattern = Annotated[
    str,
    msgspec.Meta(pattern=r"^[a-z_]+\.([a-z_]+|\*)$", description="an event name or a family: `request.*`"),
]
Purpose = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class SubscriptionFilter(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    purposes: Annotated[list[Purpose], msgspec.Meta(min_length=1, max_length=100)]
    """Events about a purpose (consent.changed) are sent only for these; events about no purpose always are."""


class SubscriptionIn(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)]
    events: Annotated[list[EventPattern], msgspec.Meta(min_length=1, max_length=50)]
    filter: SubscriptionFilter | None = None


class SubscriptionUpdate(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Fields left out keep their value; `"filter": null` removes the filter."""

    url: Annotated[str, msgspec.Meta(min_length=1, max_length=2048)] | msgspec.UnsetType = msgspec.UNSET
    events: Annotated[list[EventPattern], msgspec.Meta(min_length=1, max_length=50)] | msgspec.UnsetType = (
        msgspec.UNSET
    )
    filter: SubscriptionFilter | None | msgspec.UnsetType = msgspec.UNSET


class Subscription(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    url: str
    events: list[str]
    filter: SubscriptionFilter | None
    status: Literal["active", "paused"]
    created_at: datetime
    updated_at: datetime
    pending: int
    """Deliveries waiting to be sent (or retried)."""
    dead: int
    """Deliveries that gave up: replay them once the receiver is fixed."""


class SubscriptionCreated(Subscription, frozen=True, kw_only=True):
    secret: str
    """Shown once: receivers verify signatures with it (Standard Webhooks, `whsec_...`)."""


class SubscriptionSecret(msgspec.Struct, frozen=True):
    id: UUID
    secret: str
    previous_secret_retires_at: datetime | None
    """Until then deliveries carry a signature by each secret."""


DeliveryStatus = Literal["pending", "delivered", "dead"]


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    """The event's place in commit order: deliveries to a subscription go out in this order."""
    webhook_id: UUID
    """The `webhook-id` header: the same on every attempt and replay, for receivers to drop repeats."""
    type: str
    created_at: datetime
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status: int | None
    """The receiver's HTTP status on the last attempt, if it answered."""
    last_error: str | None
    delivered_at: datetime | None


class Deliveries(msgspec.Struct, frozen=True):
    deliveries: list[Delivery]
    next_cursor: str | None


class ReplayRange(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    since: AwareDatetime
    until: AwareDatetime


class Replayed(msgspec.Struct, frozen=True):
    replayed: int
