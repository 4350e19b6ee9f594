"""HTTP routes of data-subject requests: staff intake and lifecycle, downstream systems, exports and receipts."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated
from uuid import UUID

import asyncpg
from litestar import Controller, HttpMethod, Request, Response, get, post, route
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from consent_svc import crypto, outbox
from consent_svc.audit import store as audit_store
from consent_svc.bodies import json_body
from consent_svc.errors import Conflict, Forbidden, Gone, NotFound, ProblemError, problem_responses
from consent_svc.requests import documents, systems, verification
from consent_svc.requests import store as request_store
from consent_svc.requests.desk import Desk
from consent_svc.requests.documents import SubjectExport
from consent_svc.requests.types import (
    CompleteIn,
    ExportLink,
    ReasonIn,
    RequestIn,
    RequestPage,
    SignedReceipt,
    Status,
    SubjectRequest,
    System,
    SystemCreated,
    SystemIn,
    VerifyIn,
)
from consent_svc.settings import Settings
from consent_svc.webhooks import ssrf
from consent_svc.webhooks.delivery import Outbound

RequestPath = FromPath[UUID]
EXPORTABLE = ("access", "portability")


def _now() -> datetime:
    return datetime.now(UTC)


async def _exportable(conn: asyncpg.Connection, request_id: UUID) -> request_store.Row:
    row = await request_store.get(conn, request_id, _now().date())
    if row is None:
        raise NotFound("No such request.")
    if row.request.type not in EXPORTABLE:
        raise Conflict("Only access and portability requests have an export.", title="No export")
    if row.request.status not in ("verified", "in_progress", "completed"):
        raise Conflict(
            f"The request is `{row.request.status}`: an export needs a verified requester.",
            title="Not verified",
        )
    if row.wrapped_key is None:
        raise Gone("The subject's data was erased: there is nothing left to export.", title="Erased")
    return row


async def _view(pool: asyncpg.Pool, keys: crypto.Keys, request_id: UUID) -> SubjectRequest:
    async with pool.acquire() as conn:
        found = await request_store.detailed(conn, keys, request_id, _now().date())
    if found is None:
        raise NotFound("No such request.")
    return found


async def _acted(
    pool: asyncpg.Pool, desk: Desk, request_id: UUID, act: Callable[[asyncpg.Connection], Awaitable[None]]
) -> SubjectRequest:
    """A desk action in its own transaction, then the request as it now stands."""
    async with pool.acquire() as conn, conn.transaction():
        await act(conn)
    return await _view(pool, desk.keys, request_id)


class RequestController(Controller):
    path = "/requests"
    tags = ["requests"]
    opt = {"scope": "requests:manage"}

    @post(
        "/",
        status_code=201,
        summary="Log a data-subject request; its legal due date comes from its region's policy",
        description=(
            "`received_at` logs a request that arrived earlier by another channel (never in the future). The "
            "same type for the same identifiers within the duplicate window answers the open request (200). "
            "Opt-out types take effect at once as refusals in the ledger and complete."
        ),
        dto=json_body(RequestIn),
        return_dto=None,
        responses=problem_responses(409, 413, 422),
    )
    async def create(
        self,
        request: Request,
        data: JSONBody[RequestIn],
        pool: NamedDependency[asyncpg.Pool],
        desk: NamedDependency[Desk],
    ) -> Response[SubjectRequest]:
        async with pool.acquire() as conn, conn.transaction():
            request_id, created = await desk.intake(
                conn, data, request.state.api_key_id, data.channel, _now()
            )
        return Response(await _view(pool, desk.keys, request_id), status_code=201 if created else 200)

    @get(
        "/",
        summary="Requests for the privacy team, by due date (overdue first)",
        responses=problem_responses(400, 422),
    )
    async def list_requests(
        self,
        pool: NamedDependency[asyncpg.Pool],
        status: FromQuery[Status | None] = None,
        overdue: FromQuery[bool] = False,
        due_before: FromQuery[date | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> RequestPage:
        after = None
        if cursor:
            try:
                day, _, rid = cursor.partition("_")
                after = (date.fromisoformat(day), UUID(rid))
            except ValueError:
                raise ProblemError("`cursor` is not one this service issued", title="Bad cursor") from None
        async with pool.acquire() as conn:
            found = await request_store.page(conn, _now().date(), status, overdue, due_before, after, limit)
        last = found[-1] if len(found) == limit else None
        return RequestPage(requests=found, next_cursor=f"{last.due_at}_{last.id}" if last else None)

    @route("/", http_method=[HttpMethod.OPTIONS], include_in_schema=False)
    async def allowed_methods(self) -> Response[None]:
        # As on /v1/sources: the OPTIONS answer of a path with several handlers lists only the first one's.
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @get(
        "/{request_id:uuid}",
        summary="One request, with its history and systems",
        responses=problem_responses(404),
    )
    async def get_request(
        self, request_id: RequestPath, pool: NamedDependency[asyncpg.Pool], keys: NamedDependency[crypto.Keys]
    ) -> SubjectRequest:
        return await _view(pool, keys, request_id)

    @post(
        "/{request_id:uuid}/verify",
        status_code=200,
        summary="Mark the requester's identity verified (a deletion is then carried out)",
        dto=json_body(VerifyIn),
        return_dto=None,
        responses=problem_responses(404, 409, 413, 422),
    )
    async def verify(
        self,
        request: Request,
        request_id: RequestPath,
        data: JSONBody[VerifyIn],
        pool: NamedDependency[asyncpg.Pool],
        desk: NamedDependency[Desk],
    ) -> SubjectRequest:
        return await _acted(
            pool,
            desk,
            request_id,
            lambda conn: desk.verify(
                conn, request_id, request.state.api_key_id, data.reason, data.verified_at, _now()
            ),
        )

    @post(
        "/{request_id:uuid}/extend",
        status_code=200,
        summary="Extend the due date once, by what the region's law allows, with a reason",
        dto=json_body(ReasonIn),
        return_dto=None,
        responses=problem_responses(404, 409, 413, 422),
    )
    async def extend(
        self,
        request: Request,
        request_id: RequestPath,
        data: JSONBody[ReasonIn],
        pool: NamedDependency[asyncpg.Pool],
        desk: NamedDependency[Desk],
    ) -> SubjectRequest:
        return await _acted(
            pool,
            desk,
            request_id,
            lambda conn: desk.extend(conn, request_id, request.state.api_key_id, data.reason, _now()),
        )

    @post(
        "/{request_id:uuid}/reject",
        status_code=200,
        summary="Refuse a request; a refusal needs its reason",
        dto=json_body(ReasonIn),
        return_dto=None,
        responses=problem_responses(404, 409, 413, 422),
    )
    async def reject(
        self,
        request: Request,
        request_id: RequestPath,
        data: JSONBody[ReasonIn],
        pool: NamedDependency[asyncpg.Pool],
        desk: NamedDependency[Desk],
    ) -> SubjectRequest:
        return await _acted(
            pool,
            desk,
            request_id,
            lambda conn: desk.reject(conn, request_id, request.state.api_key_id, data.reason, _now()),
        )

    @post(
        "/{request_id:uuid}/complete",
        status_code=200,
        summary="Mark a verified request completed (every downstream system must have confirmed)",
        dto=json_body(CompleteIn),
        return_dto=None,
        responses=problem_responses(404, 409, 413, 422),
    )
    async def complete(
        self,
        request: Request,
        request_id: RequestPath,
        data: JSONBody[CompleteIn],
        pool: NamedDependency[asyncpg.Pool],
        desk: NamedDependency[Desk],
    ) -> SubjectRequest:
        return await _acted(
            pool,
            desk,
            request_id,
            lambda conn: desk.complete(conn, request_id, request.state.api_key_id, data.reason, _now()),
        )

    @get(
        "/{request_id:uuid}/export",
        summary="Everything the service holds about the subject, as JSON (access and portability requests)",
        description=(
            "For a verified, in-progress or completed `access` or `portability` request: the identifiers in "
            "clear, the current consents and full history with sources and proofs, every decision, the audit "
            "activity, and the outbound deliveries that named the subject. 410 once the subject was erased."
        ),
        responses=problem_responses(404, 409, 410),
    )
    async def export(
        self,
        request_id: RequestPath,
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        desk: NamedDependency[Desk],
    ) -> SubjectExport:
        async with pool.acquire() as conn:
            row = await _exportable(conn, request_id)
            return await documents.export(conn, keys, row, await desk.subjects(conn, row))

    @post(
        "/{request_id:uuid}/export-link",
        status_code=201,
        summary="A one-time, expiring download link of the export for the customer",
        description=(
            "Also announced as `request.export_ready` (sealed at rest, with the identifiers to send it to) for the "
            "business's messaging. The link works once, until `expires_at`."
        ),
        responses=problem_responses(404, 409, 410),
    )
    async def export_link(
        self,
        request_id: RequestPath,
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        settings: NamedDependency[Settings],
    ) -> ExportLink:
        expires_at = _now() + timedelta(minutes=settings.public_code_minutes)
        async with pool.acquire() as conn, conn.transaction():
            row = await _exportable(conn, request_id)
            token = await verification.issue_link(conn, keys, request_id, expires_at)
            link = ExportLink(url=f"/public/exports/{token}", expires_at=expires_at)
            body = {
                "request_id": str(request_id),
                "url": link.url,
                "expires_at": expires_at.isoformat(),
                "identifiers": [
                    {"type": k, "value": v} for k, v in request_store.open_identifiers(keys, row)
                ],
            }
            await outbox.append(conn, [outbox.sealed_event(keys, "request.export_ready", body)])
        return link

    @get(
        "/{request_id:uuid}/receipt",
        summary="Proof of how a closed request was handled, signed with the audit log's Ed25519 key",
        description=(
            "`signature` is Ed25519 over the canonical JSON of `receipt`: keys sorted, no whitespace, UTF-8 "
            "(Python: `json.dumps(receipt, sort_keys=True, separators=(',', ':'), ensure_ascii=False)`). "
            "Verify it with `public_key` or GET /v1/audit/public-key."
        ),
        responses=problem_responses(404, 409),
    )
    async def receipt(
        self,
        request_id: RequestPath,
        pool: NamedDependency[asyncpg.Pool],
        signer: NamedDependency[crypto.Signer],
    ) -> SignedReceipt:
        async with pool.acquire() as conn:
            row = await request_store.get(conn, request_id, _now().date())
            if row is None:
                raise NotFound("No such request.")
            if row.request.status not in ("completed", "rejected"):
                raise Conflict(
                    "A receipt is issued once the request is completed or rejected.", title="Still open"
                )
            return await documents.receipt(conn, row, signer)

    @post(
        "/{request_id:uuid}/systems/{system_id:uuid}/confirm",
        opt={"scope": "requests:confirm"},
        status_code=200,
        summary="A downstream system confirms it carried out the request (with its own key)",
        responses=problem_responses(403, 404),
    )
    async def confirm(
        self,
        request: Request,
        request_id: RequestPath,
        system_id: FromPath[UUID],
        pool: NamedDependency[asyncpg.Pool],
        desk: NamedDependency[Desk],
    ) -> SubjectRequest:
        async with pool.acquire() as conn, conn.transaction():
            if await systems.by_key(conn, request.state.api_key_id) != system_id:
                raise Forbidden("Only the system itself confirms, with its own key.", title="Not this system")
            await desk.confirm(conn, request_id, system_id, request.state.api_key_id, _now())
        return await _view(pool, desk.keys, request_id)


class SystemController(Controller):
    path = "/systems"
    tags = ["requests"]
    opt = {"scope": "requests:manage"}

    @post(
        "/",
        status_code=201,
        summary="Register a downstream system; its signing secret and API key are shown once",
        description=(
            "The system is sent `request.<type>_requested` events (signed per Standard Webhooks) for the request "
            "types it handles, with the identifiers it needs, and confirms each with its own key at "
            "POST /v1/requests/{id}/systems/{system_id}/confirm."
        ),
        dto=json_body(SystemIn),
        return_dto=None,
        responses=problem_responses(409, 413, 422),
    )
    async def create(
        self,
        request: Request,
        data: JSONBody[SystemIn],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        settings: NamedDependency[Settings],
        outbound: NamedDependency[Outbound],
    ) -> SystemCreated:
        await ssrf.checked_url(data.url, settings)
        async with pool.acquire() as conn, conn.transaction():
            made = await systems.create(conn, keys, data)
            if made is None:
                raise Conflict(f"A system named `{data.name}` exists.", title="System exists")
            body = {"system_id": str(made.id), "name": made.name, "request_types": made.request_types}
            await audit_store.append(
                conn, [audit_store.entry("request.system.created", request.state.api_key_id, body)]
            )
        outbound.subscriptions_changed()
        return made

    @get("/", summary="Downstream systems (never their secrets or keys)", responses=problem_responses())
    async def list_systems(self, pool: NamedDependency[asyncpg.Pool]) -> list[System]:
        async with pool.acquire() as conn:
            return await systems.listed(conn)

    @route("/", http_method=[HttpMethod.OPTIONS], include_in_schema=False)
    async def allowed_methods(self) -> Response[None]:
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})
