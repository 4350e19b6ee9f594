"""The customers' side, with no API key: submit a request, prove the identifier with a one-time code, follow the
request, download the export through a one-time link.

Nothing here tells whether the service knows the identifiers: every request is recorded and answered alike,
since the law gives an unknown person the same right to an answer ("we hold nothing about you").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Request, get, post
from litestar.datastructures import ResponseHeader
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from consent_svc import crypto, outbox
from consent_svc.audit import store as audit_store
from consent_svc.bodies import json_body
from consent_svc.consents.ledger import hash_identifiers
from consent_svc.errors import Conflict, Gone, InvalidInput, NotFound, ProblemError, problem_responses
from consent_svc.exceptions import FieldError
from consent_svc.requests import deadlines, documents, verification
from consent_svc.requests import store as request_store
from consent_svc.requests.desk import Desk
from consent_svc.requests.documents import SubjectExport
from consent_svc.requests.types import CodeIn, PublicRequestAccepted, PublicRequestIn, PublicRequestStatus
from consent_svc.requests.verification import CodeCheck
from consent_svc.settings import Settings

MAX_PUBLIC_BODY = 16 * 1024
RETRY_AFTER = "3600"


class VerificationRequested(msgspec.Struct, frozen=True):
    """`request.verification_requested`, sealed: the business's own messaging sends the code to the person."""

    request_id: UUID
    type: str
    code: str
    expires_at: datetime
    identifiers: list[dict[str, str]]


class TooManyRequests(ProblemError):
    status = 429
    slug = "too-many-requests"
    default_title = "Too many requests"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": RETRY_AFTER})


def now() -> datetime:
    return datetime.now(UTC)


async def limit(
    pool: asyncpg.Pool, keys: crypto.Keys, buckets: list[tuple[bytes, int]], now: datetime
) -> None:
    """Counted in their own transaction, before anything else: a refused or invalid request still counts."""
    async with pool.acquire() as conn:
        for bucket, allowed in buckets:
            if await verification.hit(conn, keys, bucket, now) > allowed:
                raise TooManyRequests(
                    "Too many requests from here or for this identifier; try again in an hour."
                )


def client_address(request: Request) -> bytes:
    return b"address\0" + (request.client.host if request.client else "unknown").encode()


async def submit(
    pool: asyncpg.Pool,
    keys: crypto.Keys,
    desk: Desk,
    settings: Settings,
    data: PublicRequestIn,
    address: bytes,
) -> PublicRequestAccepted:
    """A customer's request, from the API or the privacy center: the same answer whether or not the identifiers
    are known."""
    at = now()
    await limit(pool, keys, [(address, settings.public_rate_per_address)], at)
    hashed, errors = hash_identifiers(data.subject.identifiers, desk.rules.lookup_hash, "subject.identifiers")
    if errors:
        raise InvalidInput(f"{errors[0].field}: {errors[0].message}", errors=errors)
    await limit(
        pool, keys, [(b"identifier\0" + h, settings.public_rate_per_identifier) for (_, _, h) in hashed], at
    )
    async with pool.acquire() as conn, conn.transaction():
        request_id, _ = await desk.intake(conn, data, "public", "web", at)
        row = await request_store.get(conn, request_id, at.date())
        assert row is not None
        if row.request.status == "verifying":
            await _send_code(conn, keys, settings, row, at)
    return PublicRequestAccepted(
        id=row.request.id,
        type=row.request.type,
        status=row.request.status,
        received_at=row.request.received_at,
        due_at=row.request.due_at,
        next_step=(
            "Done: your choice is recorded."
            if row.request.type in deadlines.OPT_OUT_TYPES
            else "We sent a one-time code to the address you gave, if we can reach it; enter it to confirm."
        ),
    )


async def confirm(
    pool: asyncpg.Pool,
    keys: crypto.Keys,
    desk: Desk,
    settings: Settings,
    request_id: UUID,
    code: str,
    address: bytes,
) -> PublicRequestStatus:
    """Check a one-time code; the request is then verified (and a deletion carried out)."""
    at = now()
    await limit(pool, keys, [(address, settings.public_rate_per_address)], at)
    async with pool.acquire() as conn, conn.transaction():
        outcome, left = await verification.check_code(
            conn, keys, request_id, code, settings.public_code_attempts, at
        )
        if outcome is CodeCheck.OK:
            await desk.verify(conn, request_id, "public", "one-time code sent to the requester", None, at)
    # Outside the transaction: a wrong try is counted (committed) before the answer says so.
    if outcome is CodeCheck.NONE:
        raise NotFound("No request waits for a code under this id.")
    if outcome is CodeCheck.EXPIRED:
        raise Gone("The code has expired: submit the request again for a new one.", title="Code expired")
    if outcome is CodeCheck.LOCKED:
        raise Conflict(
            "Too many wrong codes: this request is locked. Submit it again for a new code.",
            title="Verification locked",
        )
    if outcome is CodeCheck.WRONG:
        raise InvalidInput(
            f"code: not the code we sent ({left} tries left)",
            errors=[FieldError("code", f"not the code we sent ({left} tries left)")],
        )
    return await status(pool, request_id)


class PublicRequestController(Controller):
    path = "/public"
    tags = ["privacy center"]
    opt = {"public": True}
    security = []
    request_max_body_size = MAX_PUBLIC_BODY

    @post(
        "/requests",
        status_code=202,
        summary="Ask to see, get, correct or delete your data, or to opt out (no account needed)",
        description=(
            "The answer is the same whether or not the service knows the identifiers. Except for opt-outs, which "
            "take effect at once, a one-time code is sent to the identifier (through the business's messaging: "
            "the `request.verification_requested` event); confirm it at /public/requests/{id}/verify. "
            "Rate-limited per client address and per identifier (429 with Retry-After)."
        ),
        dto=json_body(PublicRequestIn),
        return_dto=None,
        responses=problem_responses(413, 422, 429, keyed=False),
    )
    async def submit_request(
        self,
        request: Request,
        data: JSONBody[PublicRequestIn],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        desk: NamedDependency[Desk],
        settings: NamedDependency[Settings],
    ) -> PublicRequestAccepted:
        return await submit(pool, keys, desk, settings, data, client_address(request))

    @post(
        "/requests/{request_id:uuid}/verify",
        status_code=200,
        summary="Confirm a request with the one-time code",
        dto=json_body(CodeIn),
        return_dto=None,
        responses=problem_responses(404, 409, 410, 413, 422, 429, keyed=False),
    )
    async def verify(
        self,
        request: Request,
        request_id: FromPath[UUID],
        data: JSONBody[CodeIn],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        desk: NamedDependency[Desk],
        settings: NamedDependency[Settings],
    ) -> PublicRequestStatus:
        return await confirm(pool, keys, desk, settings, request_id, data.code, client_address(request))

    @get(
        "/requests/{request_id:uuid}",
        summary="A request's status and due date",
        responses=problem_responses(404, keyed=False),
    )
    async def request_status(
        self, request_id: FromPath[UUID], pool: NamedDependency[asyncpg.Pool]
    ) -> PublicRequestStatus:
        return await status(pool, request_id)

    @get(
        "/exports/{token:str}",
        summary="Download your data through the one-time link you were sent",
        response_headers=[
            ResponseHeader(name="Content-Disposition", value='attachment; filename="your-data.json"')
        ],
        responses=problem_responses(404, 410, keyed=False),
    )
    async def download(
        self,
        token: FromPath[str],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        desk: NamedDependency[Desk],
    ) -> SubjectExport:
        if len(token) > 100:
            raise Gone("This link is not valid, was used already, or has expired.", title="Link not valid")
        async with pool.acquire() as conn, conn.transaction():
            request_id = await verification.use_link(conn, keys, token)
            row = await request_store.get(conn, request_id, now().date()) if request_id else None
            if row is None or row.wrapped_key is None:
                raise Gone(
                    "This link is not valid, was used already, or has expired.", title="Link not valid"
                )
            subjects = await desk.subjects(conn, row)
            body = {"request_id": str(request_id)}
            # One entry per subject, so that each one's timeline shows the download.
            await audit_store.append(
                conn, [audit_store.entry("request.exported", "public", body, s) for s in subjects or [None]]
            )
            return await documents.export(conn, keys, row, subjects)


async def status(pool: asyncpg.Pool, request_id: UUID) -> PublicRequestStatus:
    async with pool.acquire() as conn:
        row = await request_store.get(conn, request_id, now().date())
    if row is None:
        raise NotFound("No such request.")
    r = row.request
    return PublicRequestStatus(
        id=r.id, type=r.type, status=r.status, received_at=r.received_at, due_at=r.due_at
    )


async def _send_code(
    conn: asyncpg.Connection, keys: crypto.Keys, settings: Settings, row: request_store.Row, now: datetime
) -> None:
    expires_at = now + timedelta(minutes=settings.public_code_minutes)
    code = await verification.issue_code(conn, keys, row.request.id, expires_at)
    body = VerificationRequested(
        request_id=row.request.id,
        type=row.request.type,
        code=code,
        expires_at=expires_at,
        identifiers=[{"type": k, "value": v} for k, v in request_store.open_identifiers(keys, row)],
    )
    await outbox.append(conn, [outbox.sealed_event(keys, "request.verification_requested", body)])
