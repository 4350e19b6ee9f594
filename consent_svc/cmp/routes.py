"""HTTP routes of CMP sync: register sources, and take their signed messages."""

from __future__ import annotations

import asyncpg
from litestar import Controller, HttpMethod, Request, Response, get, post, route
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from consent_svc import crypto
from consent_svc.bodies import json_body
from consent_svc.cmp import inbound, sources
from consent_svc.cmp.types import SOURCE_NAME, CmpSource, InboundEvent, SourceIn, SourceSecret
from consent_svc.consents.ledger import RecordRules
from consent_svc.consents.types import BatchReceipt
from consent_svc.errors import Conflict, InvalidInput, NotFound, problem_responses
from consent_svc.exceptions import FieldError
from consent_svc.openapi import documented, header, inline_schema
from consent_svc.policies.load import canonical_region
from consent_svc.policies.types import Policies
from consent_svc.settings import Settings
from consent_svc.signing import HEADERS

SourcePath = FromPath[str]

# The signed message as the OpenAPI document shows it: the handler reads the raw body (the signature covers
# its bytes) and the headers itself, and decodes the body only once the signature holds.
SIGNED_MESSAGE = documented(
    security=[],
    headers=[
        header(
            "webhook-id", "The message's id; a repeat from this source is answered again", {"type": "string"}
        ),
        header(
            "webhook-timestamp",
            "Unix seconds; within 5 minutes of the service's clock",
            {"type": "string", "pattern": "^[0-9]+$"},
        ),
        header(
            "webhook-signature",
            "`v1,<base64 HMAC-SHA256>` over `id.timestamp.body` with the source's secret (several, "
            "space-separated, during a rotation)",
            {"type": "string"},
        ),
    ],
    body=inline_schema(InboundEvent),
)


class SourceController(Controller):
    path = "/sources"
    tags = ["cmp sync"]

    @post(
        "/",
        opt={"scope": "webhooks:manage"},
        status_code=201,
        summary="Register a CMP source; its signing secret (whsec_...) is shown once",
        dto=json_body(SourceIn),
        return_dto=None,
        responses=problem_responses(409, 413, 422),
    )
    async def create(
        self,
        data: JSONBody[SourceIn],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
    ) -> SourceSecret:
        if data.default_region is not None and canonical_region(data.default_region) is None:
            raise InvalidInput(
                "default_region: not an ISO 3166 code",
                errors=[FieldError("default_region", "not an ISO 3166-1 alpha-2 or ISO 3166-2 code")],
            )
        async with pool.acquire() as conn, conn.transaction():
            secret = await sources.create(conn, keys, data)
        if secret is None:
            raise Conflict(f"A source named `{data.name}` exists.", title="Source exists")
        return SourceSecret(name=data.name, secret=secret)

    @get(
        "/",
        opt={"scope": "webhooks:manage"},
        summary="Registered sources (never their secrets)",
        responses=problem_responses(),
    )
    async def list_sources(self, pool: NamedDependency[asyncpg.Pool]) -> list[CmpSource]:
        async with pool.acquire() as conn:
            return await sources.listed(conn)

    @route("/", http_method=[HttpMethod.OPTIONS], include_in_schema=False)
    async def allowed_methods(self) -> Response[None]:
        # Litestar registers a controller's handlers one by one (by name) and keeps the OPTIONS answer made for
        # the first, which lists only its method: this handler, first by name, is that answer.
        return Response(None, status_code=204, headers={"Allow": "GET, OPTIONS, POST"})

    @post(
        "/{name:str}/rotate",
        opt={"scope": "webhooks:manage"},
        status_code=200,
        summary="A new secret, shown once; the old one verifies until the grace period ends",
        responses=problem_responses(404),
    )
    async def rotate(
        self,
        name: SourcePath,
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        settings: NamedDependency[Settings],
    ) -> SourceSecret:
        rotated = None
        if SOURCE_NAME.fullmatch(name):
            async with pool.acquire() as conn, conn.transaction():
                rotated = await sources.rotate(conn, keys, name, settings.webhook_secret_grace_hours)
        if rotated is None:
            raise NotFound("No such source.")
        secret, retires_at = rotated
        return SourceSecret(name=name, secret=secret, previous_secret_retires_at=retires_at)

    @post(
        "/{name:str}/disable",
        opt={"scope": "webhooks:manage"},
        status_code=200,
        summary="Refuse the source's messages from now on (403); what it sent stays",
        responses=problem_responses(404),
    )
    async def disable(self, name: SourcePath, pool: NamedDependency[asyncpg.Pool]) -> CmpSource:
        if not SOURCE_NAME.fullmatch(name):
            raise NotFound("No such source.")
        async with pool.acquire() as conn:
            await sources.disable(conn, name)
            found = await sources.listed(conn, name)
        if not found:
            raise NotFound("No such source.")
        return found[0]


class InboundController(Controller):
    path = "/inbound"
    tags = ["cmp sync"]

    @post(
        "/{source:str}",
        opt={"public": True},  # no API key: the Standard Webhooks signature with the source's secret
        operation_class=SIGNED_MESSAGE,
        status_code=202,
        summary="A CMP's signed message (Standard Webhooks): consent records in the ledger's format",
        description=(
            "Headers `webhook-id`, `webhook-timestamp` (within 5 minutes) and `webhook-signature` (`v1,<base64 "
            'HMAC-SHA256>` over `id.timestamp.body` with the source\'s secret). Body `{"type": '
            '"consent.records", "data": {"records": [...]}}`, or `{"type": "tcf.string", "data": {"subject", '
            '"tc_string", "region", "collected_at"?}}` (an IAB TCF v2.2 TC string, decoded strictly and mapped to '
            "records by policies/tcf.toml, the string kept as proof). 202 with the records' ids; a `webhook-id` "
            "already taken from this source answers the same again and stores nothing. A bad, missing or stale "
            "signature, or an unknown source: 401, nothing stored."
        ),
        responses=problem_responses(
            401,
            403,
            409,
            413,
            422,
            keyed=False,
            described={
                401: "The signature is missing, bad or stale, or the source is unknown; nothing was stored",
                403: "The source is disabled; nothing was stored",
            },
        ),
    )
    async def receive(
        self,
        source: SourcePath,
        request: Request,
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        rules: NamedDependency[RecordRules],
        policies: NamedDependency[Policies],
    ) -> Response[BatchReceipt]:
        body = await request.body()
        headers = {name: request.headers.get(name, "") for name in HEADERS}
        status, out, replayed = await inbound.receive(pool, keys, rules, policies, source, headers, body)
        extra = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(out, status_code=status, media_type="application/json", headers=extra)  # type: ignore[arg-type]
