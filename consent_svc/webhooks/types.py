"""Wire types of outbound webhooks: subscriptions, the events they may ask for, their deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

import msgspec

from consent_svc.consents.types import AwareDatetime

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
