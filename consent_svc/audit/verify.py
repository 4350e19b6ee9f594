"""`consent-svc audit verify`: recompute the tree from the entries and check every signed checkpoint.

Streams the chain in seq order through a cursor, holding one frontier (O(log n) hashes), so ten million
entries need no more memory than ten. Everything is read in one repeatable-read snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import crypto
from consent_svc.audit import chain
from consent_svc.audit.integrator import ChainBroken, frontier_of
from consent_svc.audit.types import Checkpoint

FETCH = 10_000
PROGRESS_EVERY = 1_000_000

SELECT_CHAIN = """
SELECT c.seq, c.leaf_hash, c.nodes, c.entry_id, e.at, e.action, e.actor, e.subject_id, e.outcome, e.payload
FROM audit_chain c
LEFT JOIN audit_log e ON e.at = c.at AND e.entry_id = c.entry_id
WHERE c.seq >= $1
ORDER BY c.seq
"""
SELECT_CHECKPOINTS = """
SELECT tree_size, root_hash, signed_at, key_id, signature FROM audit_checkpoints WHERE tree_size >= $1 ORDER BY tree_size
"""
# Entries the integrator has passed (at or before the chain's last one in its order) must all be in the
# chain: one more means a row was slipped into the log behind its back.
COUNT_PASSED = """
SELECT count(*) FROM audit_log
WHERE (txid, entry_id) <= (SELECT e.txid, e.entry_id FROM audit_chain c
                           JOIN audit_log e ON e.at = c.at AND e.entry_id = c.entry_id
                           ORDER BY c.seq DESC LIMIT 1)
"""
COUNT_ALL = "SELECT count(*) FROM audit_log"


class Report(msgspec.Struct):
    ok: bool
    entries: int = 0
    checkpoints: int = 0
    unsigned: int = 0
    """Chained entries after the latest checkpoint (signed within seconds while the service runs)."""
    pending: int = 0
    """Entries not yet chained (the integrator takes them within a second while the service runs)."""
    failed_seq: int | None = None
    problem: str = ""
    seconds: float = 0.0
    key_ids: list[str] = []

    def line(self) -> str:
        rate = f"{self.entries / self.seconds:,.0f} entries/s" if self.seconds > 0 else ""
        if not self.ok:
            return (
                f"FAIL at seq {self.failed_seq}: {self.problem} ({self.entries:,} entries checked before it)"
            )
        return (
            f"ok: {self.entries:,} entries verified, {self.checkpoints:,} checkpoints signed by "
            f"{', '.join(self.key_ids) or 'no key'}; {self.unsigned:,} after the latest checkpoint, "
            f"{self.pending:,} awaiting integration; {self.seconds:.1f} s, {rate}"
        )


async def verify(
    conn: asyncpg.Connection,
    trusted: dict[str, bytes],
    from_seq: int = 1,
    progress: Callable[[int], None] | None = None,
) -> Report:
    """`trusted`: key id -> raw Ed25519 public key. A checkpoint signed by any other key fails."""
    started = time.perf_counter()
    report = Report(ok=True)

    def fail(seq: int | None, problem: str) -> Report:
        report.ok, report.failed_seq, report.problem = False, seq, problem
        report.seconds = time.perf_counter() - started
        return report

    async with conn.transaction(isolation="repeatable_read", readonly=True):
        try:
            frontier = await frontier_of(conn, from_seq - 1)
        except ChainBroken as exc:
            return fail(from_seq, str(exc))
        checkpoints = await conn.cursor(SELECT_CHECKPOINTS, from_seq)
        pending_checkpoints = await checkpoints.fetch(FETCH)
        used_keys: set[str] = set()
        last_signed = from_seq - 1

        def check_checkpoint(cp: asyncpg.Record) -> str | None:
            key = trusted.get(cp["key_id"])
            if key is None:
                return f"checkpoint at tree size {cp['tree_size']} is signed by untrusted key {cp['key_id']}"
            body = chain.checkpoint_body(cp["tree_size"], cp["root_hash"], cp["signed_at"])
            if not crypto.signature_valid(key, cp["signature"], body):
                return f"checkpoint at tree size {cp['tree_size']} has a bad signature"
            if cp["root_hash"] != frontier.root():
                return (
                    f"the tree of the first {cp['tree_size']:,} entries differs from the signed checkpoint: an "
                    f"entry after seq {last_signed} was changed along with its stored hashes"
                )
            used_keys.add(cp["key_id"])
            return None

        expected = from_seq
        cursor = await conn.cursor(SELECT_CHAIN, from_seq)
        while rows := await cursor.fetch(FETCH):
            for seq, stored_leaf, nodes, entry_id, at, action, actor, subject_id, outcome, body in rows:
                if seq != expected:
                    return fail(expected, f"missing from the chain (the next row is seq {seq})")
                if at is None:
                    return fail(seq, f"entry {entry_id} is missing from the log or its time was changed")
                leaf = chain.leaf_hash(
                    chain.canonical(entry_id, at, action, actor, subject_id, outcome, body)
                )
                if leaf != stored_leaf:
                    return fail(seq, f"entry {entry_id} was changed (its hash differs from the chain's)")
                closed = frontier.append(leaf)
                if b"".join(closed) != nodes:
                    stored = chain.split_nodes(nodes)
                    level = next(k for k in range(1, 65) if closed[k - 1 : k] != stored[k - 1 : k])
                    start = seq - (1 << level) + 1
                    return fail(
                        start,
                        f"the tree over seq {start}-{seq} does not match its stored hashes: entries reordered or "
                        "hashes changed",
                    )
                while pending_checkpoints and pending_checkpoints[0]["tree_size"] <= seq:
                    cp = pending_checkpoints.pop(0)
                    if cp["tree_size"] == seq and (problem := check_checkpoint(cp)):
                        return fail(last_signed + 1, problem)
                    report.checkpoints += 1
                    last_signed = cp["tree_size"]
                    if not pending_checkpoints:
                        pending_checkpoints = await checkpoints.fetch(FETCH)
                report.entries += 1
                expected += 1
                if progress and report.entries % PROGRESS_EVERY == 0:
                    progress(report.entries)
        if pending_checkpoints:
            size = pending_checkpoints[0]["tree_size"]
            return fail(
                expected, f"a checkpoint covers {size:,} entries but the chain ends at seq {expected - 1}"
            )
        passed = await conn.fetchval(COUNT_PASSED) if expected > 1 else 0
        if passed > expected - 1:
            return fail(None, f"{passed - (expected - 1):,} entries are in the log but not in the chain")
        report.pending = await conn.fetchval(COUNT_ALL) - passed
    report.unsigned = expected - 1 - max(last_signed, from_seq - 1)
    report.key_ids = sorted(used_keys)
    report.seconds = time.perf_counter() - started
    return report


class ExportLine(msgspec.Struct):
    """An export line as read back: the payload kept as its exact bytes (they are what the leaf hashed)."""

    seq: int
    entry_id: UUID
    at: datetime
    action: str
    actor: str
    subject_id: UUID | None
    outcome: str | None
    payload: msgspec.Raw
    leaf_hash: bytes
    inclusion_proof: list[bytes]


class ExportTail(msgspec.Struct):
    checkpoint: Checkpoint | None
    entries: int


def verify_export(path: Path, trusted: dict[str, bytes]) -> Report:
    """Check an NDJSON export offline: the signed checkpoint on its last line, then every entry's hash and
    inclusion proof against it. Needs only the public key; two passes over the file, one line in memory."""
    started = time.perf_counter()
    report = Report(ok=True)

    def fail(seq: int | None, problem: str) -> Report:
        report.ok, report.failed_seq, report.problem = False, seq, problem
        report.seconds = time.perf_counter() - started
        return report

    last = b""
    with path.open("rb") as f:
        for raw in f:
            if raw.strip():
                last = raw
    try:
        tail = msgspec.json.decode(last, type=ExportTail)
    except msgspec.DecodeError:
        return fail(None, "the last line is not the closing checkpoint: the export is cut short")
    cp = tail.checkpoint
    if cp is None:
        return fail(None, "no checkpoint: the log was empty") if tail.entries else report
    key = trusted.get(cp.key_id)
    if key is None:
        return fail(None, f"the checkpoint is signed by key {cp.key_id}, which is not trusted")
    if not crypto.signature_valid(
        key, cp.signature, chain.checkpoint_body(cp.tree_size, cp.root_hash, cp.signed_at)
    ):
        return fail(None, "the checkpoint's signature is not valid")
    report.checkpoints, report.key_ids = 1, [cp.key_id]
    decoder = msgspec.json.Decoder(ExportLine)
    previous = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip() or raw == last:
                continue
            try:
                e = decoder.decode(raw)
            except msgspec.DecodeError as exc:
                return fail(None, f"line {number} is not an export line ({exc})")
            if e.seq <= previous:
                return fail(e.seq, f"line {number} is out of order (after seq {previous})")
            previous = e.seq
            leaf = chain.leaf_hash(
                chain.canonical(
                    e.entry_id, e.at, e.action, e.actor, e.subject_id, e.outcome, bytes(e.payload)
                )
            )
            if leaf != e.leaf_hash:
                return fail(e.seq, f"entry {e.entry_id} was changed (it no longer matches its leaf hash)")
            if chain.root_from_proof(e.seq, cp.tree_size, leaf, e.inclusion_proof) != cp.root_hash:
                return fail(
                    e.seq, f"entry {e.entry_id} is not in the signed tree (its inclusion proof fails)"
                )
            report.entries += 1
    if report.entries != tail.entries:
        return fail(None, f"the checkpoint line says {tail.entries} entries, the file holds {report.entries}")
    report.seconds = time.perf_counter() - started
    return report
