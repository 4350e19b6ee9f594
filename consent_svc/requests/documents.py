"""What a request produces for people outside the service: the subject's data export (access, portability) and
the signed receipt that proves how the request was handled."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import crypto
from consent_svc.audit import store as audit_store
from consent_svc.audit.store import AuditFilter
from consent_svc.consents import store as consent_store
from consent_svc.consents.types import ConsentRecordOut, PurposeState
from consent_svc.requests import store as request_store
from consent_svc.requests.types import ExportedIdentifier, Receipt, SignedReceipt, SubjectRequest
from consent_svc.webhooks import subscriptions

PAGE = 1000
EXPORT_FORMAT = "consent-svc.subject-export/1"


class ExportedSubject(msgspec.Struct, frozen=True):
    subject_id: UUID
    created_at: datetime
    identifiers: list[ExportedIdentifier]
    current_consents: list[PurposeState]
    consent_history: list[ConsentRecordOut]
    """Every record, newest collected first, with its source (system, touchpoint, CMP, notice) and proof."""
    decisions: list[dict[str, Any]]
    """Every consent check made about the subject: purpose, region, outcome, reason, policy version."""
    activity: list[dict[str, Any]]
    """Everything else the audit log holds about the subject (records received, requests, erasures)."""
    deliveries: list[dict[str, Any]]
    """Outbound webhooks that named the subject: which event, to which host, when, with what result."""


class SubjectExport(msgspec.Struct, frozen=True):
    format: str
    generated_at: datetime
    request_id: UUID
    identifiers: list[ExportedIdentifier]
    """The identifiers the request gave."""
    subjects: list[ExportedSubject]
    """The ledger's subjects those identifiers name (none if the service holds nothing about them)."""
    requests: list[SubjectRequest]
    """Every data-subject request about these identifiers."""


async def export(
    conn: asyncpg.Connection, keys: crypto.Keys, row: request_store.Row, subjects: list[UUID]
) -> SubjectExport:
    today = datetime.now(UTC).date()
    exported = []
    for subject_id in subjects:
        view = await consent_store.subject_view(conn, keys, subject_id)
        if view is None:
            continue
        exported.append(
            ExportedSubject(
                subject_id=subject_id,
                created_at=view.created_at,
                identifiers=[
                    ExportedIdentifier(k, v)
                    for k, v in await consent_store.identifiers(conn, keys, subject_id)
                ],
                current_consents=view.consents,
                consent_history=await _history(conn, keys, subject_id),
                **await _audit(conn, subject_id),
                deliveries=await subscriptions.deliveries_about(conn, subject_id),
            )
        )
    return SubjectExport(
        format=EXPORT_FORMAT,
        generated_at=datetime.now(UTC),
        request_id=row.request.id,
        identifiers=[ExportedIdentifier(k, v) for k, v in request_store.open_identifiers(keys, row)],
        subjects=exported,
        requests=await request_store.related(conn, row.lookup_hashes, subjects, today),
    )


async def _history(conn: asyncpg.Connection, keys: crypto.Keys, subject_id: UUID) -> list[ConsentRecordOut]:
    records: list[ConsentRecordOut] = []
    cursor = None
    while True:
        page = await consent_store.history(conn, keys, subject_id, None, cursor, PAGE)
        if page is None:
            return records
        records += page.records
        if len(page.records) < PAGE:
            return records
        cursor = (page.records[-1].collected_at, page.records[-1].id)


async def _audit(conn: asyncpg.Connection, subject_id: UUID) -> dict[str, list[dict[str, Any]]]:
    decisions, activity = [], []
    cursor = None
    while True:
        entries, cursor = await audit_store.search(
            conn, AuditFilter(subject_id=subject_id), cursor, PAGE, oldest_first=True
        )
        for entry in entries:
            item = {"at": entry.at, "action": entry.action, "outcome": entry.outcome, **entry.payload}
            item.pop("lookup_hash", None)  # a keyed hash means nothing to its subject
            item.pop("fingerprint", None)
            (decisions if entry.action.startswith("decision.") else activity).append(item)
        if cursor is None:
            return {"decisions": decisions, "activity": activity}


def canonical(receipt: Receipt) -> bytes:
    return msgspec.json.encode(receipt, order="sorted")


async def receipt(conn: asyncpg.Connection, row: request_store.Row, signer: crypto.Signer) -> SignedReceipt:
    request = row.request
    history = await request_store.history(conn, request.id)
    erased = next((h for h in history if h.action == "start" and request.type == "deletion"), None)
    document = Receipt(
        request_id=request.id,
        type=request.type,
        region=request.region,
        regime=request.regime,
        policy_version=request.policy_version,
        status=request.status,
        received_at=request.received_at,
        due_at=request.due_at,
        extended=request.extended,
        closed_at=request.closed_at,
        subject_ref=[h.hex() for h in row.lookup_hashes],
        history=history,
        systems=await request_store.systems_of(conn, request.id),
        erased_subject=request.subject_id if erased else None,
        issued_at=datetime.now(UTC),
    )
    return SignedReceipt(
        receipt=document,
        signature=signer.sign(canonical(document)),
        key_id=signer.key_id,
        public_key=signer.public_key,
    )
