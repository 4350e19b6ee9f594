"""Liveness and readiness, for orchestrators: no key, no body worth hiding."""

from __future__ import annotations

import asyncpg
import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec

from consent_svc.db import migrations_current


class Health(msgspec.Struct, frozen=True):
    status: str
    database: str | None = None
    migrations: str | None = None


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", summary="The process is up")
    async def live(self) -> Health:
        return Health(status="ok")

    @get(
        "/ready",
        summary="The database answers and every migration is applied",
        responses={
            503: ResponseSpec(
                data_container=Health,
                description="Not ready: the database is unreachable or migrations are pending",
                generate_examples=False,
            )
        },
    )
    async def ready(self, pool: NamedDependency[asyncpg.Pool]) -> Response[Health]:
        try:
            async with pool.acquire(timeout=2) as conn:
                current = await migrations_current(conn)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return Response(Health("unavailable", database="unreachable"), status_code=503)
        if not current:
            return Response(Health("unavailable", database="ok", migrations="pending"), status_code=503)
        return Response(Health("ok", database="ok", migrations="current"))
