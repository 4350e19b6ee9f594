"""HTTP routes of outbound webhooks: subscriptions, their deliveries and replays."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, HttpMethod, Request, Response, delete, get, patch, post, route
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from consent_svc import crypto, cursors
from consent_svc.audit import store as audit_store
from consent_svc.bodies import json_body
from consent_svc.consents.ledger import RecordRules
from consent_svc.errors import InvalidInput, NotFound, problem_responses
from consent_svc.exceptions import FieldError, out_of_range
from consent_svc.settings import Settings
from consent_svc.webhooks import ssrf, subscriptions
from consent_svc.webhooks.delivery import Outbound
from consent_svc.webhooks.types import (
    EVENT_FAMILIES,
    EVENT_TYPES,
    Deliveries,
    DeliveryStatus,
    Replayed,
    ReplayRange,
    Subscription,
    SubscriptionCreated,
    SubscriptionFilter,
    SubscriptionIn,
    SubscriptionSecret,
    SubscriptionUpdate,
)

SubscriptionPath = FromPath[UUID]


class SubscriptionAudit(msgspec.Struct, frozen=True, omit_defaults=True):
    """A subscription change's audit payload: where events go (the host, not a URL that may hold a token)."""

    subscription_id: UUID
    events: list[str] | None = None
    host: str | None = None
    purposes: list[str] | None = None
    replayed: int | None = None
    seq: int | None = None


def _checked_events(names: list[str], purposes: list[str] | None, rules: RecordRules) -> None:
    errors = [
        FieldError(
            f"events[{i}]", f"unknown event `{name}`; known: {', '.join(EVENT_TYPES)} (or a family: x.*)"
        )
        for i, name in enumerate(names)
        if name not in EVENT_TYPES and name not in EVENT_FAMILIES
    ]
    errors += [
        FieldError(f"filter.purposes[{i}]", f"unknown purpose `{purpose}` (see GET /v1/purposes)")
        for i, purpose in enumerate(purposes or [])
        if purpose not in rules.purposes
    ]
    if errors:
        raise InvalidInput(f"{errors[0].field}: {errors[0].message}", errors=errors)


def _audit(action: str, request: Request, body: SubscriptionAudit) -> tuple:
    return audit_store.entry(action, request.state.api_key_id, body)


class SubscriptionController(Controller):
    path = "/webhooks/subscriptions"
    tags = ["outbound webhooks"]
    opt = {"scope": "webhooks:manage"}

    @post(
        "/",
        status_code=201,
        summary="Subscribe a URL to events; its signing secret (whsec_...) is shown once",
        description=(
            "Events are POSTed signed per Standard Webhooks (`webhook-id`, `webhook-timestamp`, "
            '`webhook-signature`), body `{"type", "timestamp", "sequence", "data"}`, one at a time in '
            "`sequence` order. Delivery is at least once: drop repeats by `webhook-id`. The URL must be https "
            "in production mode; hosts resolving to loopback, private, link-local or metadata addresses are "
            "refused (here and at each delivery) unless CONSENT_SVC_WEBHOOK_ALLOW_PRIVATE_NETWORKS=1."
        ),
        dto=json_body(SubscriptionIn),
        return_dto=None,
        responses=problem_responses(413, 422),
    )
    async def create(
        self,
        request: Request,
        data: JSONBody[SubscriptionIn],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        rules: NamedDependency[RecordRules],
        settings: NamedDependency[Settings],
        outbound: NamedDependency[Outbound],
    ) -> SubscriptionCreated:
        purposes = data.filter.purposes if data.filter else None
        _checked_events(data.events, purposes, rules)
        await ssrf.checked_url(data.url, settings)
        async with pool.acquire() as conn, conn.transaction():
            subscription_id, secret = await subscriptions.create(conn, keys, data)
            host = urlsplit(data.url).hostname
            entry = SubscriptionAudit(subscription_id, events=data.events, host=host, purposes=purposes)
            await audit_store.append(conn, [_audit("webhook.subscription.created", request, entry)])
            made = await subscriptions.get(conn, subscription_id)
        outbound.subscriptions_changed()
        return SubscriptionCreated(**msgspec.structs.asdict(made), secret=secret)

    @get("/", summary="Subscriptions (never their secrets)", responses=problem_responses())
    async def list_subscriptions(self, pool: NamedDependency[asyncpg.Pool]) -> list[Subscription]:
        async with pool.acquire() as conn:
            return await subscriptions.listed(conn)

    @route("/", http_method=[HttpMethod.OPTIONS], include_in_schema=False)
    async def allowed_methods(self) -> Response[None]:
        # As on /v1/sources: the OPTIONS answer of a path with several handlers lists only the first one's.
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @get("/{subscription_id:uuid}", summary="One subscription", responses=problem_responses(404))
    async def get_subscription(
        self, subscription_id: SubscriptionPath, pool: NamedDependency[asyncpg.Pool]
    ) -> Subscription:
        async with pool.acquire() as conn:
            found = await subscriptions.get(conn, subscription_id)
        if found is None:
            raise NotFound("No such subscription.")
        return found

    @route("/{subscription_id:uuid}", http_method=[HttpMethod.OPTIONS], include_in_schema=False)
    async def allowed_methods_one(self) -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": "DELETE, GET, OPTIONS, PATCH"})

    @patch(
        "/{subscription_id:uuid}",
        summary="Change the URL, the events or the filter (fields left out keep their value)",
        dto=json_body(SubscriptionUpdate),
        return_dto=None,
        responses=problem_responses(404, 413, 422),
    )
    async def update(
        self,
        request: Request,
        subscription_id: SubscriptionPath,
        data: JSONBody[SubscriptionUpdate],
        pool: NamedDependency[asyncpg.Pool],
        rules: NamedDependency[RecordRules],
        settings: NamedDependency[Settings],
        outbound: NamedDependency[Outbound],
    ) -> Subscription:
        events = None if data.events is msgspec.UNSET else data.events
        purposes = data.filter.purposes if isinstance(data.filter, SubscriptionFilter) else None
        _checked_events(events or [], purposes, rules)
        if data.url is not msgspec.UNSET:
            await ssrf.checked_url(data.url, settings)
        async with pool.acquire() as conn, conn.transaction():
            if not await subscriptions.update(conn, subscription_id, data):
                raise NotFound("No such subscription.")
            host = None if data.url is msgspec.UNSET else urlsplit(data.url).hostname
            entry = SubscriptionAudit(subscription_id, events=events, host=host, purposes=purposes)
            await audit_store.append(conn, [_audit("webhook.subscription.updated", request, entry)])
            changed = await subscriptions.get(conn, subscription_id)
        outbound.subscriptions_changed()
        return changed

    @delete(
        "/{subscription_id:uuid}",
        status_code=204,
        summary="Stop sending: what was waiting is dropped; the delivery history stays",
        responses=problem_responses(404),
    )
    async def delete_subscription(
        self,
        request: Request,
        subscription_id: SubscriptionPath,
        pool: NamedDependency[asyncpg.Pool],
        outbound: NamedDependency[Outbound],
    ) -> None:
        async with pool.acquire() as conn, conn.transaction():
            if not await subscriptions.delete(conn, subscription_id):
                raise NotFound("No such subscription.")
            entry = SubscriptionAudit(subscription_id)
            await audit_store.append(conn, [_audit("webhook.subscription.deleted", request, entry)])
        outbound.subscriptions_changed()

    @post(
        "/{subscription_id:uuid}/pause",
        status_code=200,
        summary="Hold deliveries: events keep queueing and go out, in order, on resume",
        responses=problem_responses(404),
    )
    async def pause(
        self,
        request: Request,
        subscription_id: SubscriptionPath,
        pool: NamedDependency[asyncpg.Pool],
        outbound: NamedDependency[Outbound],
    ) -> Subscription:
        return await _set_paused(request, pool, outbound, subscription_id, True)

    @post(
        "/{subscription_id:uuid}/resume",
        status_code=200,
        summary="Deliver again, starting with what queued while paused",
        responses=problem_responses(404),
    )
    async def resume(
        self,
        request: Request,
        subscription_id: SubscriptionPath,
        pool: NamedDependency[asyncpg.Pool],
        outbound: NamedDependency[Outbound],
    ) -> Subscription:
        return await _set_paused(request, pool, outbound, subscription_id, False)

    @post(
        "/{subscription_id:uuid}/rotate",
        status_code=200,
        summary="A new secret, shown once; deliveries carry both signatures until the old one retires",
        responses=problem_responses(404),
    )
    async def rotate(
        self,
        request: Request,
        subscription_id: SubscriptionPath,
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        settings: NamedDependency[Settings],
        outbound: NamedDependency[Outbound],
    ) -> SubscriptionSecret:
        async with pool.acquire() as conn, conn.transaction():
            if await subscriptions.get(conn, subscription_id) is None:
                raise NotFound("No such subscription.")
            secret, retires_at = await subscriptions.rotate(
                conn, keys, subscription_id, settings.webhook_secret_grace_hours
            )
            entry = SubscriptionAudit(subscription_id)
            await audit_store.append(conn, [_audit("webhook.subscription.rotated", request, entry)])
        outbound.subscriptions_changed()
        return SubscriptionSecret(id=subscription_id, secret=secret, previous_secret_retires_at=retires_at)

    @get(
        "/{subscription_id:uuid}/deliveries",
        summary="Deliveries to a subscription, newest first: status, attempts, last error",
        responses=problem_responses(404, 422),
    )
    async def deliveries(
        self,
        subscription_id: SubscriptionPath,
        pool: NamedDependency[asyncpg.Pool],
        status: FromQuery[DeliveryStatus | None] = None,
        cursor: Annotated[int | None, QueryParameter(ge=1, le=cursors.MAX_SEQ)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> Deliveries:
        async with pool.acquire() as conn:
            if await subscriptions.get(conn, subscription_id) is None:
                raise NotFound("No such subscription.")
            return await subscriptions.deliveries(conn, subscription_id, status, cursor, limit)

    @post(
        "/{subscription_id:uuid}/deliveries/{seq:int}/replay",
        status_code=202,
        summary="Send one delivery again (delivered or dead), ahead of the queue",
        responses=problem_responses(404),
    )
    async def replay_one(
        self,
        request: Request,
        subscription_id: SubscriptionPath,
        seq: FromPath[int],
        pool: NamedDependency[asyncpg.Pool],
    ) -> Replayed:
        async with pool.acquire() as conn, conn.transaction():
            if await subscriptions.get(conn, subscription_id) is None:
                raise NotFound("No such subscription.")
            replayed = 0 < seq <= cursors.MAX_SEQ and await subscriptions.replay_one(
                conn, subscription_id, seq
            )
            if not replayed:
                raise NotFound("No such delivery.")
            entry = SubscriptionAudit(subscription_id, seq=seq, replayed=1)
            await audit_store.append(conn, [_audit("webhook.delivery.replayed", request, entry)])
        return Replayed(replayed=1)

    @post(
        "/{subscription_id:uuid}/replay",
        status_code=202,
        summary="Send again every delivery of events made in [since, until)",
        dto=json_body(ReplayRange),
        return_dto=None,
        responses=problem_responses(404, 413, 422),
    )
    async def replay_range(
        self,
        request: Request,
        subscription_id: SubscriptionPath,
        data: JSONBody[ReplayRange],
        pool: NamedDependency[asyncpg.Pool],
    ) -> Replayed:
        if errors := out_of_range([("since", data.since), ("until", data.until)]):
            raise InvalidInput(errors=errors)
        if data.until <= data.since:
            raise InvalidInput(
                "until: must be after since", errors=[FieldError("until", "must be after since")]
            )
        async with pool.acquire() as conn, conn.transaction():
            if await subscriptions.get(conn, subscription_id) is None:
                raise NotFound("No such subscription.")
            count = await subscriptions.replay_range(conn, subscription_id, data.since, data.until)
            entry = SubscriptionAudit(subscription_id, replayed=count)
            await audit_store.append(conn, [_audit("webhook.delivery.replayed", request, entry)])
        return Replayed(replayed=count)


async def _set_paused(
    request: Request, pool: asyncpg.Pool, outbound: Outbound, subscription_id: UUID, paused: bool
) -> Subscription:
    async with pool.acquire() as conn, conn.transaction():
        if not await subscriptions.pause(conn, subscription_id, paused):
            raise NotFound("No such subscription.")
        action = "webhook.subscription.paused" if paused else "webhook.subscription.resumed"
        await audit_store.append(conn, [_audit(action, request, SubscriptionAudit(subscription_id))])
        changed = await subscriptions.get(conn, subscription_id)
    outbound.subscriptions_changed()
    return changed
