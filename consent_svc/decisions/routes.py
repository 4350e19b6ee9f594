"""HTTP routes of the consent check: decide (one or many), explain a past decision, replay one."""

from __future__ import annotations

from uuid import UUID

import asyncpg
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody

from consent_svc.bodies import json_body
from consent_svc.decisions import replay, store
from consent_svc.decisions.decider import Decider
from consent_svc.decisions.engine import REASONS
from consent_svc.decisions.types import (
    BatchCheckRequest,
    BatchDecisions,
    CheckRequest,
    Decision,
    RecordedDecision,
    ReplayedDecision,
    ReplayRequest,
)
from consent_svc.errors import NotFound, problem_responses

REASON_LIST = ", ".join(f"`{r}`" for r in REASONS)


class DecisionController(Controller):
    path = "/decisions"
    tags = ["decisions"]

    @post(
        "/",
        opt={"scope": "decisions:check"},
        status_code=200,
        summary="May this subject's data be used for this purpose, in this region, now?",
        description=(
            "Answers with the decision, its reason and the policy version, after recording it durably (503 if it "
            "cannot be recorded). An unknown subject is not an error: it has no consent, and the region's regime "
            f"decides. Reasons: {REASON_LIST}."
        ),
        dto=json_body(CheckRequest),
        return_dto=None,
        responses=problem_responses(409, 413, 422),
    )
    async def check(
        self, request: Request, data: JSONBody[CheckRequest], decider: NamedDependency[Decider]
    ) -> Decision:
        return await decider.check(decider.prepare(data, request.state.api_key_id))

    @post(
        "/batch",
        opt={"scope": "decisions:check"},
        status_code=200,
        summary="Check 1 to 10,000 subjects at once (audience activation); results in request order",
        description="Every item is decided and recorded as a live decision, all in one commit.",
        dto=json_body(BatchCheckRequest),
        return_dto=None,
        responses=problem_responses(409, 413, 422),
    )
    async def check_batch(
        self, request: Request, data: JSONBody[BatchCheckRequest], decider: NamedDependency[Decider]
    ) -> BatchDecisions:
        rows = decider.prepare_batch(data.items, request.state.api_key_id)
        return BatchDecisions(results=await decider.check_batch(rows))

    @post(
        "/replay",
        opt={"scope": "decisions:check"},
        status_code=200,
        summary="What the answer would have been at a past moment, under that (or a given) policy version",
        description=(
            "Rebuilt from the ledger: by default from every record collected by `at` (the legal state then, "
            "including records that arrived later); with `as_known`, only from those received by `at`. "
            "Replays are not live decisions and are not recorded as decisions."
        ),
        dto=json_body(ReplayRequest),
        return_dto=None,
        responses=problem_responses(404, 409, 413, 422),
    )
    async def replay(
        self,
        request: Request,
        data: JSONBody[ReplayRequest],
        pool: NamedDependency[asyncpg.Pool],
        decider: NamedDependency[Decider],
    ) -> ReplayedDecision:
        return await replay.replay(pool, decider.rulebook, decider.rules, data, request.state.api_key_id)

    @get(
        "/{decision_id:uuid}",
        opt={"scope": "audit:read"},
        summary="A recorded decision with its inputs, the consent record it rested on, and the policy version",
        responses=problem_responses(404),
    )
    async def get_decision(
        self, decision_id: FromPath[UUID], pool: NamedDependency[asyncpg.Pool]
    ) -> RecordedDecision:
        async with pool.acquire() as conn:
            found = await store.recorded(conn, decision_id)
        if found is None:
            raise NotFound("No decision with this id.")
        return found
