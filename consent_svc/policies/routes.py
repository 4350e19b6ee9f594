"""Read the loaded policies."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency

from consent_svc.errors import problem_responses
from consent_svc.policies.types import Policies, PurposeCatalogue


class PolicyController(Controller):
    path = "/"
    tags = ["policies"]

    @get(
        "/purposes",
        opt={"scope": "consents:read"},
        summary="The purpose catalogue records and checks name",
        responses=problem_responses(),
    )
    async def list_purposes(self, policies: NamedDependency[Policies]) -> PurposeCatalogue:
        return policies.purposes
