"""Bulk import from NDJSON or CSV: each line validated alone, valid ones stored in chunks."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from consent_svc import crypto, db
from consent_svc.audit.store import SYSTEM
from consent_svc.consents.ledger import RecordRules, prepare_record, record_batch
from consent_svc.consents.store import PreparedRecord
from consent_svc.consents.types import BatchReceipt, ConsentRecordIn
from consent_svc.exceptions import Conflicting, Invalid
from consent_svc.policies.load import load_policies
from consent_svc.settings import Settings

CHUNK = 1000
# CSV carries one identifier per row; NDJSON lines are full records as POST /v1/consents takes them.
CSV_COLUMNS = {
    "identifier_type",
    "identifier_value",
    "purpose",
    "status",
    "collected_at",
    "region",
    "source_system",
    "source_touchpoint",
    "source_method",
    "notice_id",
    "notice_version",
    "cmp",
    "actor",
    "expires_at",
}


class Rejected(Exception):
    pass


def _csv_record(row: dict[str, str]) -> dict:
    if None in row:
        raise Rejected("more fields than the header has columns")
    unknown = set(row) - CSV_COLUMNS
    if unknown:
        raise Rejected(f"unknown column(s) {sorted(unknown)}")
    get = lambda name: (row.get(name) or "").strip() or None  # noqa: E731
    source = {
        "system": get("source_system"),
        "touchpoint": get("source_touchpoint"),
        "method": get("source_method"),
        "cmp": get("cmp"),
        "actor": get("actor") or "subject",
    }
    if get("notice_id") or get("notice_version"):
        source["notice"] = {"id": get("notice_id"), "version": get("notice_version")}
    return {
        "subject": {"identifiers": [{"type": get("identifier_type"), "value": get("identifier_value")}]},
        "purpose": get("purpose"),
        "status": get("status"),
        "collected_at": get("collected_at"),
        "region": get("region"),
        "source": {k: v for k, v in source.items() if v is not None},
        **({"expires_at": get("expires_at")} if get("expires_at") else {}),
    }


def _text_lines(f, undecodable: list[int]) -> Iterator[str]:
    """Lines as text; a line that is not UTF-8 becomes an empty one, its number noted, so the rest goes on."""
    for number, raw in enumerate(f, start=1):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            undecodable.append(number)
            yield "\n"


def read_lines(path: Path, fmt: str) -> Iterator[tuple[int, ConsentRecordIn | Exception]]:
    """(line number, record or the reason it is not one), in file order."""
    if fmt == "auto":
        fmt = "csv" if path.suffix.lower() == ".csv" else "ndjson"
    undecodable: list[int] = []
    with path.open("rb") as f:
        lines = _text_lines(f, undecodable)
        if fmt == "ndjson":
            for number, line in enumerate(lines, start=1):
                if undecodable:
                    yield undecodable.pop(), Rejected("not UTF-8 text")
                elif line.strip():
                    try:
                        yield number, msgspec.json.decode(line, type=ConsentRecordIn)
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        yield number, exc
            return
        reader = csv.DictReader(lines)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                yield reader.line_num, exc
                continue
            while undecodable:
                yield undecodable.pop(0), Rejected("not UTF-8 text")
            try:
                yield reader.line_num, msgspec.convert(_csv_record(row), ConsentRecordIn)
            except (Rejected, msgspec.ValidationError) as exc:
                yield reader.line_num, exc
        for number in undecodable:
            yield number, Rejected("not UTF-8 text")


async def run(settings: Settings, keys: crypto.Keys, path: Path, fmt: str) -> dict:
    rules = RecordRules.of(load_policies(settings.policies_dir), keys, settings)
    pool = await db.create_pool(settings)
    accepted = duplicates = rejected = 0
    chunk: list[tuple[int, PreparedRecord]] = []

    def reject(number: int, reason: str) -> None:
        nonlocal rejected
        rejected += 1
        progress.console.print(f"line {number}: {reason}", style="red", highlight=False)

    async def flush() -> None:
        nonlocal accepted, duplicates
        if not chunk:
            return
        try:
            _, body, _ = await record_batch(pool, keys, [p for _, p in chunk], SYSTEM)
            results = [msgspec.json.decode(body, type=BatchReceipt)]
        except Conflicting:
            # Find the lines that conflict: store the chunk one record at a time.
            results = []
            for number, prepared in chunk:
                try:
                    _, body, _ = await record_batch(pool, keys, [prepared], SYSTEM)
                    results.append(msgspec.json.decode(body, type=BatchReceipt))
                except Conflicting as exc:
                    reject(number, exc.detail)
        for receipt in results:
            accepted += len(receipt.records)
            duplicates += sum(r.duplicate for r in receipt.records)
        chunk.clear()

    with path.open("rb") as f:
        total = sum(1 for _ in f)
    with Progress(
        TextColumn("importing lines"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    ) as progress:
        task = progress.add_task("import", total=total)
        try:
            now = datetime.now(UTC)
            for number, item in read_lines(path, fmt):
                if isinstance(item, Exception):
                    reject(number, str(item))
                    continue
                try:
                    chunk.append((number, prepare_record(item, rules, now)))
                except Invalid as exc:
                    reject(number, "; ".join(f"{e.field}: {e.message}" for e in exc.errors))
                if len(chunk) >= CHUNK:
                    await flush()
                    now = datetime.now(UTC)
                progress.update(task, completed=number)
            await flush()
            progress.update(task, completed=total)
        finally:
            await pool.close()
    return {"accepted": accepted, "duplicates": duplicates, "rejected": rejected}
