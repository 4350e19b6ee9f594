"""HTTP routes of the ledger: write consent records, find a subject, read its state and history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated
from uuid import UUID

import asyncpg
from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter

from consent_svc import crypto, cursors, idempotency
from consent_svc.bodies import json_body
from consent_svc.consents import store
from consent_svc.consents.ledger import RecordRules, hash_identifiers, prepare_batch, record_batch
from consent_svc.consents.types import (
    BatchReceipt,
    ConsentBatch,
    ConsentHistory,
    LookupResult,
    SubjectIdentifiers,
    SubjectView,
)
from consent_svc.errors import Conflict, InvalidInput, NotFound, ProblemError, problem_responses
from consent_svc.exceptions import FieldError


class ConsentController(Controller):
    path = "/"
    tags = ["consents"]

    @post(
        "/consents",
        opt={"scope": "consents:write"},
        status_code=201,
        summary="Record consent choices (1 to 10,000 records, all or nothing)",
        dto=json_body(ConsentBatch),
        return_dto=None,
        responses=problem_responses(400, 409, 413, 422),
    )
    async def record_consents(
        self,
        request: Request,
        data: JSONBody[ConsentBatch],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        rules: NamedDependency[RecordRules],
        idempotency_key: Annotated[
            str | None,
            HeaderParameter(
                name="Idempotency-Key", required=False, description="Replays the first answer on retry"
            ),
        ] = None,
    ) -> Response[BatchReceipt]:
        prepared = prepare_batch(data, rules, datetime.now(UTC))
        claim = idempotency.claim_for(
            request.state.api_key_id,
            idempotency_key,
            data,
            rules.idempotency_key,
            rules.idempotency_ttl_hours,
        )
        status, body, replayed = await record_batch(pool, keys, prepared, request.state.api_key_id, claim)
        headers = {"Idempotent-Replayed": "true"} if replayed else {}
        return Response(body, status_code=status, media_type="application/json", headers=headers)  # type: ignore[arg-type]

    @post(
        "/subjects/lookup",
        opt={"scope": "consents:read"},
        status_code=200,
        summary="Find a subject by its identifiers (in the body, never the URL)",
        responses=problem_responses(400, 404, 409, 413, 422),
    )
    async def lookup_subject(
        self,
        data: JSONBody[SubjectIdentifiers],
        pool: NamedDependency[asyncpg.Pool],
        rules: NamedDependency[RecordRules],
    ) -> LookupResult:
        hashed, errors = hash_identifiers(data.identifiers, rules.lookup_hash, "identifiers")
        if errors:
            raise InvalidInput(errors[0].message, errors=errors)
        found = set((await store.subjects_by_hash(pool, [h for (_, _, h) in hashed])).values())
        if not found:
            raise NotFound("No subject has these identifiers")
        if len(found) > 1:
            raise Conflict("These identifiers belong to different subjects")
        return LookupResult(subject_id=found.pop())

    @get(
        "/subjects/{subject_id:uuid}",
        opt={"scope": "consents:read"},
        summary="A subject: masked identifiers, current state",
        responses=problem_responses(404),
    )
    async def get_subject(
        self,
        subject_id: FromPath[UUID],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
    ) -> SubjectView:
        async with pool.acquire() as conn:
            view = await store.subject_view(conn, keys, subject_id)
        if view is None:
            raise NotFound("No such subject")
        return view

    @get(
        "/subjects/{subject_id:uuid}/consents",
        opt={"scope": "consents:read"},
        summary="A subject's consent history, newest collected first",
        responses=problem_responses(400, 404, 422),
    )
    async def get_history(
        self,
        subject_id: FromPath[UUID],
        pool: NamedDependency[asyncpg.Pool],
        keys: NamedDependency[crypto.Keys],
        rules: NamedDependency[RecordRules],
        purpose: FromQuery[str | None] = None,
        cursor: FromQuery[str | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    ) -> ConsentHistory:
        if purpose is not None and purpose not in rules.purposes:
            raise InvalidInput(
                f"unknown purpose `{purpose}`", errors=[FieldError("purpose", "unknown purpose")]
            )
        try:
            after = cursors.decode(cursor) if cursor else None
        except ValueError:
            raise ProblemError("`cursor` is not one this service issued", title="Bad cursor") from None
        async with pool.acquire() as conn:
            page = await store.history(conn, keys, subject_id, purpose, after, limit)
        if page is None:
            raise NotFound("No such subject")
        return page
