"""Migrations: applied once, in order, under an advisory lock; an applied file may not change."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from consent_svc import db
from tests.conftest import _admin, _with_database


@pytest.fixture
async def empty_db(pg_url):
    name = f"empty_{uuid.uuid4().hex[:10]}"
    await _admin(pg_url, f'CREATE DATABASE "{name}"')
    yield _with_database(pg_url, name)
    await _admin(pg_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_two_instances_migrating_at_once_apply_each_file_once(empty_db):
    conns = [await asyncpg.connect(empty_db) for _ in range(3)]
    try:
        results = await asyncio.gather(*(db.migrate(c) for c in conns))
        applied = sorted(v for result in results for v in result)
        assert applied == [m.version for m in db.load_migrations()]
        rows = await conns[0].fetch("SELECT version, checksum FROM schema_migrations ORDER BY version")
        assert [(r["version"], r["checksum"]) for r in rows] == [
            (m.version, m.checksum) for m in db.load_migrations()
        ]
        assert await db.migrations_current(conns[0])
    finally:
        for c in conns:
            await c.close()


async def test_an_applied_migration_that_changed_is_refused(empty_db):
    conn = await asyncpg.connect(empty_db)
    try:
        await db.migrate(conn)
        first = db.load_migrations()[0]
        edited = [
            db.Migration(first.version, first.name, first.sql + "\n-- edited"),
            *db.load_migrations()[1:],
        ]
        with pytest.raises(db.MigrationError, match="changed after it was applied"):
            await db.migrate(conn, edited)
    finally:
        await conn.close()


async def test_ready_is_red_while_a_migration_is_pending(client, conn):
    assert (await client.get("/health/ready")).status_code == 200
    await conn.execute(
        "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)"
    )
    pending = await client.get("/health/ready")
    assert pending.status_code == 503
    assert pending.json() == {"status": "unavailable", "database": "ok", "migrations": "pending"}
    assert (await client.get("/health/live")).status_code == 200


def test_migration_files_are_numbered_and_forward_only():
    migrations = db.load_migrations()
    assert [m.version for m in migrations] == list(range(1, len(migrations) + 1))
