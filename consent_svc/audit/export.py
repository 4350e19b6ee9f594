"""The signed export of the audit log, as NDJSON or CSV: each entry with its inclusion proof, and a closing line
signed over the whole file and naming the checkpoint that covers it (`consent-svc audit verify-export` checks it
offline). Served by the API (GET /v1/audit/export) and the console alike."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
from collections.abc import AsyncIterator
from typing import NamedTuple

import asyncpg
import msgspec

from consent_svc import crypto
from consent_svc.audit import chain, store
from consent_svc.audit.store import AuditFilter
from consent_svc.audit.types import Checkpoint, ExportedEntry, ExportEnd

NDJSON = "application/x-ndjson"


CSV = "text/csv"


CSV_COLUMNS = [*ExportedEntry.__struct_fields__]


class Export(NamedTuple):
    pool: asyncpg.Pool
    signer: crypto.Signer
    slots: asyncio.Semaphore
    """Exports at once per worker: each holds a connection for its whole download."""


async def _exported(
    export: Export, where: AuditFilter, checkpoint: Checkpoint | None
) -> AsyncIterator[list[ExportedEntry]]:
    if checkpoint is None:
        return
    # A connection held for the whole download: a few exports at a time per worker (app.py), so they never
    # take the pool from the checks.
    async with (
        export.slots,
        export.pool.acquire() as conn,
        conn.transaction(isolation="repeatable_read", readonly=True),
    ):
        async for chunk in store.export(conn, where, checkpoint.tree_size):
            yield chunk


def _export_end(
    signer: crypto.Signer, where: AuditFilter, checkpoint: Checkpoint | None, count: int, digest: bytes
) -> ExportEnd:
    filter_json = store.payload({k: v for k, v in where._asdict().items() if v is not None})
    body = chain.export_body(checkpoint.tree_size if checkpoint else 0, count, digest, filter_json)
    return ExportEnd(
        checkpoint=checkpoint,
        entries=count,
        filter=msgspec.json.decode(filter_json),
        sha256=digest,
        key_id=signer.key_id,
        signature=signer.sign(body),
        signed_note=body.decode(),
    )


async def ndjson_lines(
    export: Export, where: AuditFilter, checkpoint: Checkpoint | None
) -> AsyncIterator[bytes]:
    encoder = msgspec.json.Encoder()
    digest = hashlib.sha256()
    count = 0
    async for chunk in _exported(export, where, checkpoint):
        count += len(chunk)
        data = b"".join(encoder.encode(e) + b"\n" for e in chunk)
        digest.update(data)
        yield data
    yield encoder.encode(_export_end(export.signer, where, checkpoint, count, digest.digest())) + b"\n"


async def csv_lines(
    export: Export, where: AuditFilter, checkpoint: Checkpoint | None
) -> AsyncIterator[bytes]:
    """The NDJSON line's fields as columns (payload as its JSON text, proof as space-separated base64); the
    last row has `action` = `checkpoint` and the closing object (as NDJSON's last line) as its payload."""
    encoder = msgspec.json.Encoder()
    digest = hashlib.sha256()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    count = 0
    async for chunk in _exported(export, where, checkpoint):
        count += len(chunk)
        for e in chunk:
            row = msgspec.json.decode(encoder.encode(e))
            row["payload"] = bytes(e.payload).decode()
            row["inclusion_proof"] = " ".join(row["inclusion_proof"])
            writer.writerow([row[c] if row[c] is not None else "" for c in CSV_COLUMNS])
        data = buffer.getvalue().encode()
        digest.update(data)
        yield data
        buffer.seek(0)
        buffer.truncate()
    if not count:
        data = buffer.getvalue().encode()  # the header
        digest.update(data)
        yield data
        buffer.seek(0)
        buffer.truncate()
    end = encoder.encode(_export_end(export.signer, where, checkpoint, count, digest.digest())).decode()
    writer.writerow(["" if c != "action" else "checkpoint" for c in CSV_COLUMNS[:-3]] + [end, "", ""])
    yield buffer.getvalue().encode()
