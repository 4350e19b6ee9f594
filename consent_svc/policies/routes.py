"""Read the loaded policies, and every version ever loaded."""

from __future__ import annotations

import re

import asyncpg
import msgspec
from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from consent_svc.errors import NotFound, problem_responses
from consent_svc.policies import store
from consent_svc.policies.store import VersionSummary
from consent_svc.policies.types import Policies, PurposeCatalogue, Regime

VERSION_SHAPE = re.compile(r"[A-Za-z0-9.+_-]{1,80}")


class PolicySet(msgspec.Struct, frozen=True):
    version: str
    default_regime: str
    regions: dict[str, str]
    """Region code -> regime id."""
    regimes: list[Regime]
    """Each regime with what it inherits (`extends`) merged in."""


class PolicyFiles(msgspec.Struct, frozen=True):
    version: str
    files: dict[str, str]
    """Relative path -> the file exactly as it was loaded."""


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

    @get(
        "/policies",
        opt={"scope": "consents:read"},
        summary="The policy set in force: its version, the region map and every regime's rules",
        responses=problem_responses(),
    )
    async def current_policies(self, policies: NamedDependency[Policies]) -> PolicySet:
        return PolicySet(
            version=policies.version,
            default_regime=policies.regions.default,
            regions=policies.region_regime,
            regimes=sorted(policies.regimes.values(), key=lambda r: r.id),
        )

    @get(
        "/policies/versions",
        opt={"scope": "audit:read"},
        summary="Every policy version the service has loaded, newest first",
        responses=problem_responses(),
    )
    async def list_versions(self, pool: NamedDependency[asyncpg.Pool]) -> list[VersionSummary]:
        async with pool.acquire() as conn:
            return await store.versions(conn)

    @get(
        "/policies/versions/{version:str}",
        opt={"scope": "audit:read"},
        summary="A policy version's files exactly as loaded (replay with it: POST /v1/decisions/replay)",
        responses=problem_responses(404),
    )
    async def get_version(self, version: FromPath[str], pool: NamedDependency[asyncpg.Pool]) -> PolicyFiles:
        files = None
        if VERSION_SHAPE.fullmatch(
            version
        ):  # anything else (a NUL, say) names no version and never reaches SQL
            async with pool.acquire() as conn:
                files = await store.files_of(conn, version)
        if files is None:
            raise NotFound("No such policy version")
        return PolicyFiles(version=version, files=files)
