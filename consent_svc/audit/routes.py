"""HTTP routes of the audit log: search, one entry with its proof, streamed exports, checkpoints, the public
key, and a subject's timeline."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated
from uuid import UUID

import asyncpg
import msgspec
from litestar import Controller, Request, get
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, FromQuery, QueryParameter
from litestar.response import Stream

from consent_svc import crypto, cursors
from consent_svc.audit import store
from consent_svc.audit.export import CSV, NDJSON, Export, csv_lines, ndjson_lines
from consent_svc.audit.integrator import ChainBroken, Integrator
from consent_svc.audit.store import AuditFilter
from consent_svc.audit.types import (
    AuditEntry,
    AuditPage,
    Checkpoint,
    CheckpointPage,
    EntryProof,
    ExportedEntry,
    ExportEnd,
    PublicKey,
    Timeline,
    TimelineItem,
)
from consent_svc.errors import InvalidInput, NotFound, ProblemError, Unavailable, problem_responses
from consent_svc.exceptions import FieldError, out_of_range
from consent_svc.openapi import documented, inline_schema

FILTERS = (
    "Filters: `subject_id`, `action` (exact, or a family such as `request.*`), `actor` (API key id or "
    "`system`), `outcome` (`allowed`/`denied` for decisions, the status for consents), `since` and `until` "
    "(RFC 3339, until exclusive)."
)
Limit = Annotated[int, QueryParameter(ge=1, le=1000)]
# What audit_filter checks (and answers with its own message), declared for the document only.
FilterText = Annotated[
    str | None, QueryParameter(schema_extra={"min_length": 1, "max_length": 200, "pattern": r"^[^\x00]*$"})
]
# Read as text and parsed here: Litestar's lax query parsing takes a number as Unix seconds, so `since=2026`
# silently meant 1970-01-01T00:33:46Z. RFC 3339 only, as documented.
Instant = Annotated[str | None, QueryParameter(schema_extra={"format": "date-time"})]


def audit_filter(
    subject_id: FromQuery[UUID | None] = None,
    action: FilterText = None,
    actor: FilterText = None,
    outcome: FilterText = None,
    since: Instant = None,
    until: Instant = None,
) -> AuditFilter:
    """The filter query parameters of the search and the export, checked once."""
    errors, instants = [], {}
    for name, text in (("since", since), ("until", until)):
        try:
            instants[name] = msgspec.convert(text, datetime | None)
        except msgspec.ValidationError:
            errors.append(FieldError(name, "must be an RFC 3339 date-time"))
            continue
        if instants[name] is not None and instants[name].tzinfo is None:
            errors.append(FieldError(name, "must include a UTC offset"))
        else:
            errors += out_of_range([(name, instants[name])])
    errors += [
        FieldError(name, "must be 1 to 200 characters, without NUL")
        for name, value in (("action", action), ("actor", actor), ("outcome", outcome))
        if value is not None and not (0 < len(value) <= 200 and "\x00" not in value)
    ]
    if errors:
        raise InvalidInput(errors=errors)
    return AuditFilter(subject_id, action, actor, outcome, instants["since"], instants["until"])


def _cursor(text: str | None) -> tuple[datetime, UUID] | None:
    try:
        return cursors.decode(text) if text else None
    except ValueError:
        raise ProblemError("`cursor` is not one this service issued", title="Bad cursor") from None


def broken(exc: ChainBroken) -> Unavailable:
    return Unavailable(f"The audit chain cannot be extended: {exc}. Run `consent-svc audit verify`.")


class NegotiatedStream(Stream):
    """A Stream whose own media type wins over the handler's: the export answers NDJSON or CSV per request."""

    def to_asgi_response(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        kwargs["media_type"] = self.media_type
        return super().to_asgi_response(*args, **kwargs)


class AuditController(Controller):
    path = "/"
    tags = ["audit"]
    dependencies = {"where": Provide(audit_filter, sync_to_thread=False)}

    @get(
        "/audit",
        opt={"scope": "audit:read"},
        summary="Search the audit log, newest first",
        description=FILTERS
        + " Entries appear at once; `seq` is set within a second, when they join the tree.",
        responses=problem_responses(422),
    )
    async def search(
        self,
        pool: NamedDependency[asyncpg.Pool],
        where: NamedDependency[AuditFilter],
        cursor: FromQuery[str | None] = None,
        limit: Limit = 100,
    ) -> AuditPage:
        async with pool.acquire() as conn:
            entries, last = await store.search(conn, where, _cursor(cursor), limit)
        return AuditPage(entries=entries, next_cursor=cursors.encode(*last) if last else None)

    @get(
        "/audit/{seq:int}",
        opt={"scope": "audit:read"},
        summary="One entry, with its RFC 9162 inclusion proof against a signed checkpoint and its neighbours",
        responses=problem_responses(404),
    )
    async def entry(
        self,
        seq: FromPath[int],
        pool: NamedDependency[asyncpg.Pool],
        integrator: NamedDependency[Integrator],
    ) -> EntryProof:
        async with pool.acquire() as conn:
            found = await store.by_seq(conn, seq) if 0 < seq <= cursors.MAX_SEQ else None
            checkpoint = await store.latest_checkpoint(conn)
        if found is None:
            raise NotFound("No entry has this sequence number (entries join the tree within a second).")
        try:
            if checkpoint is None or checkpoint.tree_size < seq:
                checkpoint = await integrator.checkpoint()  # chained but not yet signed: sign now
            entry, leaf, previous, following = found
            async with pool.acquire() as conn:
                (proof,) = await store.proofs(conn, [seq], checkpoint.tree_size)
        except ChainBroken as exc:
            raise broken(exc) from None
        return EntryProof(entry, leaf, proof, checkpoint, previous, following)

    @get(
        "/audit/export",
        opt={"scope": "audit:read"},
        summary="Stream the entries matching a filter, oldest first, ending with the checkpoint that covers them",
        description=(
            FILTERS
            + " NDJSON (default) or CSV (`Accept: text/csv`). Each line holds the entry as hashed, its leaf "
            'hash and its inclusion proof; the last line is `{"checkpoint": ..., "entries": n, ...}`: a checkpoint '
            "signed now that covers every entry exported, and a signature over the export's bytes, count and "
            "filter. `consent-svc audit verify-export FILE` checks a file offline."
        ),
        media_type=NDJSON,
        responses=problem_responses(422),
        operation_class=documented(
            content={
                "200": {
                    NDJSON: {
                        "type": "array",
                        "description": "NDJSON: one item a line, the entries, then the closing line",
                        "items": {"anyOf": [inline_schema(ExportedEntry), inline_schema(ExportEnd)]},
                    },
                    CSV: {"type": "string", "description": "A header row, the entries, the closing line"},
                }
            }
        ),
    )
    async def export(
        self,
        request: Request,
        pool: NamedDependency[asyncpg.Pool],
        integrator: NamedDependency[Integrator],
        signer: NamedDependency[crypto.Signer],
        export_slots: NamedDependency[asyncio.Semaphore],
        where: NamedDependency[AuditFilter],
    ) -> Stream:
        try:
            as_csv = request.accept.best_match([NDJSON, CSV, "application/json"], NDJSON) == CSV
        except (ValueError, OverflowError):  # a malformed Accept (q=1e400) gets the default
            as_csv = False
        try:
            checkpoint = await integrator.checkpoint()
        except ChainBroken as exc:
            raise broken(exc) from None
        lines = csv_lines if as_csv else ndjson_lines
        return NegotiatedStream(
            lines(Export(pool, signer, export_slots), where, checkpoint),
            media_type=CSV if as_csv else NDJSON,
            headers={"Content-Disposition": f'attachment; filename="audit.{"csv" if as_csv else "ndjson"}"'},
        )

    @get(
        "/audit/checkpoints",
        opt={"scope": "audit:read"},
        summary="Signed checkpoints, newest first",
        description="`cursor` is the `tree_size` below which the next page starts (the last one returned).",
        responses=problem_responses(422),
    )
    async def list_checkpoints(
        self,
        pool: NamedDependency[asyncpg.Pool],
        cursor: Annotated[int | None, QueryParameter(ge=1, le=cursors.MAX_SEQ)] = None,
        limit: Limit = 100,
    ) -> CheckpointPage:
        async with pool.acquire() as conn:
            found = await store.checkpoints(conn, cursor, limit + 1)
        more = len(found) > limit
        return CheckpointPage(
            checkpoints=found[:limit], next_cursor=str(found[limit - 1].tree_size) if more else None
        )

    @get(
        "/audit/checkpoints/latest",
        opt={"scope": "audit:read"},
        summary="The latest signed checkpoint",
        responses=problem_responses(404),
    )
    async def latest_checkpoint(self, pool: NamedDependency[asyncpg.Pool]) -> Checkpoint:
        async with pool.acquire() as conn:
            found = await store.latest_checkpoint(conn)
        if found is None:
            raise NotFound("No checkpoint yet: the log is empty.")
        return found

    @get(
        "/audit/public-key",
        opt={"public": True},
        operation_class=documented(security=[]),
        summary="The Ed25519 public key that signs checkpoints (no API key needed)",
    )
    async def public_key(self, signer: NamedDependency[crypto.Signer]) -> PublicKey:
        return PublicKey(key_id=signer.key_id, public_key=signer.public_key, pem=signer.public_pem())

    @get(
        "/subjects/{subject_id:uuid}/timeline",
        opt={"scope": "audit:read"},
        summary="One subject's consents, decisions and requests, oldest first",
        responses=problem_responses(404, 422),
    )
    async def timeline(
        self,
        subject_id: FromPath[UUID],
        pool: NamedDependency[asyncpg.Pool],
        cursor: FromQuery[str | None] = None,
        limit: Limit = 100,
    ) -> Timeline:
        async with pool.acquire() as conn:
            entries, last = await store.search(
                conn, AuditFilter(subject_id=subject_id), _cursor(cursor), limit, oldest_first=True
            )
        if not entries and cursor is None:
            raise NotFound("Nothing is recorded about this subject.")
        return Timeline(
            subject_id=subject_id,
            items=[_timeline_item(e) for e in entries],
            next_cursor=cursors.encode(*last) if last else None,
        )


def _timeline_item(e: AuditEntry) -> TimelineItem:
    p = e.payload
    family = e.action.split(".")[0]
    kind = family if family in ("consent", "decision", "request") else "other"
    if e.action == "consent.recorded":
        summary = f"{e.outcome} {p.get('purpose')} in {p.get('region')}, collected {p.get('collected_at')}"
    elif kind == "decision":
        replay = f"replayed at {p.get('at')}: " if e.action == "decision.replayed" else ""
        summary = (
            f"{replay}{e.outcome} {p.get('purpose')} in {p.get('region')}: {p.get('reason')} "
            f"({p.get('regime')}, policy {p.get('policy_version')})"
        )
    else:
        summary = e.action + (f": {e.outcome}" if e.outcome else "")
    return TimelineItem(
        at=e.at,
        kind=kind,
        action=e.action,
        summary=summary,
        entry_id=e.entry_id,
        seq=e.seq,
        actor=e.actor,
        outcome=e.outcome,
        payload=p,
    )
