"""The application factory: the only module that wires every domain together."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
from litestar import Litestar, Router
from litestar.config.csrf import CSRFConfig
from litestar.datastructures import ResponseHeader, State
from litestar.di import Provide
from litestar.logging import LoggingConfig
from litestar.middleware.base import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.plugins.htmx import HTMXRequest
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.plugins.opentelemetry import OpenTelemetryConfig, OpenTelemetryPlugin
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from consent_svc import crypto, db, errors, idempotency, tasks, telemetry
from consent_svc.audit.integrator import Integrator
from consent_svc.audit.routes import AuditController
from consent_svc.auth import KeyRing, RequireScope
from consent_svc.cmp.routes import InboundController, SourceController
from consent_svc.consents.ledger import RecordRules
from consent_svc.consents.routes import ConsentController
from consent_svc.console import users as console_users
from consent_svc.console.routes import ConsoleController
from consent_svc.console.session import SignInRequired, current_user, session_guard, sign_in_redirect
from consent_svc.console.trail import TrailController
from consent_svc.decisions.decider import Decider
from consent_svc.decisions.engine import Rulebook
from consent_svc.decisions.routes import DecisionController
from consent_svc.health import HealthController
from consent_svc.openapi import StrictStructs
from consent_svc.policies import store as policy_store
from consent_svc.policies.load import load_policies
from consent_svc.policies.routes import PolicyController
from consent_svc.privacy import preferences
from consent_svc.privacy.routes import PrivacyCenterController
from consent_svc.requests import verification
from consent_svc.requests.desk import Desk
from consent_svc.requests.public import PublicRequestController
from consent_svc.requests.routes import RequestController, SystemController
from consent_svc.settings import Settings
from consent_svc.webhooks import subscriptions
from consent_svc.webhooks.delivery import Outbound
from consent_svc.webhooks.routes import SubscriptionController

log = logging.getLogger("consent_svc")


TEMPLATES = Path(__file__).parent / "templates"
HOUSEKEEPING_SECONDS = 600
PARTITION_MONTHS_AHEAD = 2
EXPORTS_AT_ONCE = 2  # per worker: an audit export holds a connection for its whole download
POOL_CLOSE_SECONDS = 10


async def _close_pool(pool: asyncpg.Pool) -> None:
    """Close waits for every connection to be released: one held by a task that did not stop must not hang the
    shutdown (asyncpg's advice: bound it, then terminate)."""
    try:
        await asyncio.wait_for(pool.close(), POOL_CLOSE_SECONDS)
    except TimeoutError:
        log.warning(
            "database pool still busy after %d s at shutdown; connections terminated", POOL_CLOSE_SECONDS
        )
        pool.terminate()


async def _housekeeping(pool: asyncpg.Pool, settings: Settings, desk: Desk) -> None:
    """Drop idempotency keys past retention (an expired key is already free to reuse; this frees the space) and
    outbound events past theirs, keep the next months' audit log partitions made ahead of time, and announce
    requests nearing or past their due dates."""
    while True:
        await asyncio.sleep(HOUSEKEEPING_SECONDS)
        try:
            async with pool.acquire() as conn:
                await idempotency.delete_expired(conn, settings.idempotency_ttl_hours)
                await subscriptions.delete_expired(conn, settings.webhook_retention_days)
                await conn.execute("SELECT ensure_audit_partitions($1)", PARTITION_MONTHS_AHEAD)
                await verification.delete_old_windows(conn, datetime.now(UTC))
                await console_users.delete_expired_sessions(conn, datetime.now(UTC))
                await preferences.delete_expired(conn, datetime.now(UTC))
                async with conn.transaction():
                    await desk.announce_deadlines(conn, datetime.now(UTC))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            log.warning("housekeeping skipped: %s", type(exc).__name__)


def _tune_gc() -> None:
    """Fewer cyclic-GC passes: a 2,000-record batch allocates tens of thousands of short-lived objects, and at
    the default threshold (700) the collector keeps rescanning them. Measured with bench/ingest.py on this
    machine: service CPU per 1,000 records 0.060-0.063 s before, 0.049-0.055 s after. Objects alive at start-up
    (modules, policies) are frozen out of every scan."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _tracing(signals: telemetry.Telemetry) -> list[OpenTelemetryPlugin]:
    if not signals.exported:
        return []
    config = OpenTelemetryConfig(
        tracer_provider=signals.tracer_provider,
        meter_provider=signals.meter_provider,
        scope_span_details_extractor=telemetry.route_of,
        server_request_hook_handler=telemetry.redact_caller,
        # A span per ASGI message (two per response) says nothing the server span does not, and cost about a
        # quarter of a trivial request's time (bench/check.py, closing note of issue 4).
        exclude_spans=["receive", "send"],
    )
    return [OpenTelemetryPlugin(config)]


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    policies = load_policies(settings.policies_dir)
    keys = crypto.load_keys(settings)
    rules = RecordRules.of(policies, keys, settings)
    decider = Decider(Rulebook(policies), rules, keys)  # gets its pool when the lifespan opens it
    signer = crypto.load_signing_key(settings)
    integrator = Integrator(signer, settings.audit_checkpoint_seconds)
    outbound = Outbound(keys, settings)
    desk = Desk(policies, rules, keys, settings)
    export_slots = asyncio.Semaphore(EXPORTS_AT_ONCE)
    signals = telemetry.configure()

    _tune_gc()

    @asynccontextmanager
    async def database(app: Litestar) -> AsyncIterator[None]:
        app.state.pool = await db.create_pool(settings)
        try:
            async with app.state.pool.acquire() as conn:
                await db.migrate(conn)
                await db.verify_keys(conn, keys.checks())
                await conn.execute("SELECT ensure_audit_partitions($1)", PARTITION_MONTHS_AHEAD)
                await policy_store.activate(conn, policies)
            app.state.keyring = KeyRing(app.state.pool, settings.database_url)
            await app.state.keyring.start()
            decider.pool = app.state.pool
            integrator.start(app.state.pool)
            outbound.start(app.state.pool)
            housekeeping = asyncio.create_task(_housekeeping(app.state.pool, settings, desk))
            yield
            await tasks.cancel(housekeeping)
            await outbound.stop()
            await decider.close()
            await integrator.stop()
            await app.state.keyring.stop()
        finally:
            await _close_pool(app.state.pool)

    def provide_pool(state: State) -> asyncpg.Pool:
        return state.pool

    v1 = Router(
        "/v1",
        route_handlers=[
            ConsentController,
            DecisionController,
            PolicyController,
            AuditController,
            SourceController,
            InboundController,
            SubscriptionController,
            RequestController,
            SystemController,
        ],
        middleware=[RequireScope],
        security=[{"BearerAuth": []}],
    )
    # The people's side: HTML pages with forms, CSRF-checked, with the headers a browser needs to be safe.
    csrf = DefineMiddleware(
        CSRFMiddleware,
        config=CSRFConfig(
            secret=keys.derive("csrf").hex(),
            cookie_name="consent_csrf",
            cookie_secure=settings.production,
            cookie_httponly=True,
            cookie_samesite="strict",
        ),
    )
    html_headers = [
        ResponseHeader(name=name, value=value)
        for name, value in (
            (
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
                "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
            ("X-Content-Type-Options", "nosniff"),
            ("Referrer-Policy", "no-referrer"),
            ("X-Frame-Options", "DENY"),
            ("Cache-Control", "no-store"),
        )
    ]
    console = Router(
        "/",
        route_handlers=[ConsoleController, TrailController],
        guards=[session_guard(keys)],
        dependencies={"user": Provide(current_user, sync_to_thread=False)},
        middleware=[csrf],
        response_headers=html_headers,
        exception_handlers={SignInRequired: sign_in_redirect},
        request_class=HTMXRequest,
    )
    privacy = Router(
        "/",
        route_handlers=[PrivacyCenterController],
        middleware=[csrf],
        response_headers=html_headers,
        request_class=HTMXRequest,
    )
    static = create_static_files_router(
        path="/static", directories=[TEMPLATES.parent / "static"], include_in_schema=False
    )
    return Litestar(
        route_handlers=[v1, HealthController, PublicRequestController, console, privacy, static],
        template_config=TemplateConfig(directory=TEMPLATES, engine=JinjaTemplateEngine),
        lifespan=[database],
        dependencies={
            "pool": Provide(provide_pool, sync_to_thread=False),
            # A cached constant like the ones below: a provider taking `state` cost the check 9% of its CPU.
            "decider": Provide(lambda: decider, sync_to_thread=False, use_cache=True),
            "keys": Provide(lambda: keys, sync_to_thread=False, use_cache=True),
            "rules": Provide(lambda: rules, sync_to_thread=False, use_cache=True),
            "policies": Provide(lambda: policies, sync_to_thread=False, use_cache=True),
            "signer": Provide(lambda: signer, sync_to_thread=False, use_cache=True),
            "integrator": Provide(lambda: integrator, sync_to_thread=False, use_cache=True),
            "outbound": Provide(lambda: outbound, sync_to_thread=False, use_cache=True),
            "desk": Provide(lambda: desk, sync_to_thread=False, use_cache=True),
            "export_slots": Provide(lambda: export_slots, sync_to_thread=False, use_cache=True),
            "settings": Provide(lambda: settings, sync_to_thread=False, use_cache=True),
        },
        plugins=[errors.problem_plugin(), StrictStructs(), *_tracing(signals)],
        middleware=[telemetry.RequestCounter] if signals.exported else [],
        exception_handlers=errors.exception_handlers,
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="consent-svc",
            version="0.1.0",
            path="/schema",
            components=Components(
                security_schemes={
                    "BearerAuth": SecurityScheme(type="http", scheme="bearer", description="API key")
                }
            ),
        ),
        logging_config=LoggingConfig(
            root={"level": settings.log_level, "handlers": ["queue_listener"]},
            # Errors answered as problems are the caller's; the unexpected ones are logged by errors.py.
            log_exceptions="never",
        ),
        debug=False,
    )
