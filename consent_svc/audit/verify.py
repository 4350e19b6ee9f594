"""`consent-svc audit verify`: recompute the tree from the entries and check every signed checkpoint; and
`verify-export`: check an exported slice offline.

Streams the chain in seq order through a cursor, holding one frontier (O(log n) hashes), so ten million
entries need no more memory than ten. Everything is read in one repeatable-read snapshot.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

import asyncpg
import msgspec

from consent_svc import crypto
from consent_svc.audit import chain
from consent_svc.audit.integrator import ChainBroken, frontier_of
from consent_svc.audit.types import Checkpoint, ExportedEntry, ExportEnd

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
SELECT_SIZE = "SELECT coalesce(max(seq), 0) FROM audit_chain"
# Entries the integrator has passed (at or before the chain's last one in its order) must all be in the
# chain: one more means a row was slipped into the log behind its back.
HEAD = """(SELECT h.txid, h.entry_id FROM audit_chain c JOIN audit_log h ON h.at = c.at AND h.entry_id = c.entry_id
 ORDER BY c.seq DESC LIMIT 1)"""
COUNT_PASSED = f"SELECT count(*) FROM audit_log WHERE (txid, entry_id) <= {HEAD}"
SELECT_FIRST_SLIPPED = f"""
SELECT e.txid, e.entry_id FROM audit_log e
WHERE (e.txid, e.entry_id) <= {HEAD} AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.entry_id = e.entry_id)
ORDER BY e.txid, e.entry_id
LIMIT 1
"""
COUNT_CHAINED_BEFORE = """
SELECT count(*) FROM audit_chain c JOIN audit_log e ON e.at = c.at AND e.entry_id = c.entry_id
WHERE (e.txid, e.entry_id) < ($1::xid8, $2::uuid)
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


class _Run:
    def __init__(self, trusted: dict[str, bytes]) -> None:
        self.trusted = trusted
        self.started = time.perf_counter()
        self.report = Report(ok=True)
        self.used_keys: set[str] = set()

    def fail(self, seq: int | None, problem: str) -> Report:
        r = self.report
        r.ok, r.failed_seq, r.problem = False, seq, problem
        r.seconds = time.perf_counter() - self.started
        return r

    def bad_checkpoint(self, cp: Checkpoint, root: bytes, since: int) -> str | None:
        """Why this checkpoint does not hold for a tree with this root (None: it holds)."""
        key = self.trusted.get(cp.key_id)
        if key is None:
            return f"checkpoint at tree size {cp.tree_size} is signed by untrusted key {cp.key_id}"
        if not crypto.signature_valid(
            key, cp.signature, chain.checkpoint_body(cp.tree_size, cp.root_hash, cp.signed_at)
        ):
            return f"checkpoint at tree size {cp.tree_size} has a bad signature"
        if cp.root_hash != root:
            return (
                f"the tree of the first {cp.tree_size:,} entries differs from the signed checkpoint: an entry "
                f"after seq {since} was changed along with its stored hashes"
            )
        self.used_keys.add(cp.key_id)
        return None


def _checkpoint(row: asyncpg.Record) -> Checkpoint:
    return Checkpoint(row[0], row[1], row[2], row[3], row[4], "")


async def verify(
    conn: asyncpg.Connection,
    trusted: dict[str, bytes],
    from_seq: int = 1,
    progress: Callable[[int], None] | None = None,
    kept: Checkpoint | None = None,
) -> Report:
    """`trusted`: key id -> raw Ed25519 public key; a checkpoint signed by any other key fails. `kept`: a
    checkpoint kept outside the database, which the log must still hold (someone who can write to the
    database could cut the log back, checkpoints and all: only a copy kept elsewhere shows it)."""
    run = _Run(trusted)
    report, fail = run.report, run.fail
    if kept is not None and kept.tree_size < from_seq - 1:
        return fail(from_seq, f"the kept checkpoint (tree size {kept.tree_size}) is before --from")
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        try:
            frontier = await frontier_of(conn, from_seq - 1)
        except ChainBroken as exc:
            return fail(from_seq, str(exc))
        checkpoints = await conn.cursor(SELECT_CHECKPOINTS, from_seq)
        pending = [_checkpoint(row) for row in await checkpoints.fetch(FETCH)]
        last_signed = from_seq - 1
        if kept is not None and kept.tree_size == from_seq - 1:
            if problem := run.bad_checkpoint(kept, frontier.root(), last_signed):
                return fail(from_seq, "kept " + problem)
            kept = None

        expected = from_seq
        cursor = await conn.cursor(SELECT_CHAIN, from_seq)
        while rows := await cursor.fetch(FETCH):
            for seq, stored_leaf, nodes, entry_id, at, action, actor, subject_id, outcome, body in rows:
                if seq != expected:
                    return fail(expected, f"missing from the chain (the next row is seq {seq})")
                if at is None or body is None:
                    return fail(seq, f"entry {entry_id} is missing from the log or its time was changed")
                leaf = chain.leaf_hash(
                    chain.canonical(entry_id, at, action, actor, subject_id, outcome, body)
                )
                if leaf != stored_leaf:
                    return fail(seq, f"entry {entry_id} was changed (its hash differs from the chain's)")
                closed = frontier.append(leaf)
                if nodes is None or len(nodes) != len(closed) * chain.HASH_BYTES:
                    return fail(seq, "the stored tree nodes do not fit this position: rows moved or changed")
                if b"".join(closed) != nodes:
                    stored = chain.split_nodes(nodes)
                    level = next(k for k in range(1, len(closed) + 1) if closed[k - 1] != stored[k - 1])
                    start = seq - (1 << level) + 1
                    return fail(
                        start,
                        f"the tree over seq {start}-{seq} does not match its stored hashes: entries reordered or "
                        "hashes changed",
                    )
                if kept is not None and kept.tree_size == seq:
                    if problem := run.bad_checkpoint(kept, frontier.root(), last_signed):
                        return fail(last_signed + 1, "kept " + problem)
                    kept = None
                if pending and pending[0].tree_size == seq:
                    if problem := run.bad_checkpoint(pending.pop(0), frontier.root(), last_signed):
                        return fail(last_signed + 1, problem)
                    report.checkpoints += 1
                    last_signed = seq
                    if not pending:
                        pending = [_checkpoint(row) for row in await checkpoints.fetch(FETCH)]
                report.entries += 1
                expected += 1
                if progress and report.entries % PROGRESS_EVERY == 0:
                    progress(report.entries)
        for cp in [*pending[:1], *([kept] if kept else [])]:
            return fail(
                expected,
                f"the log was cut back: a checkpoint covers {cp.tree_size:,} entries but the chain ends "
                f"at seq {expected - 1}",
            )
        size = await conn.fetchval(SELECT_SIZE)
        passed = await conn.fetchval(COUNT_PASSED) if size else 0
        if passed != size:
            slipped = await conn.fetchrow(SELECT_FIRST_SLIPPED)
            if (
                slipped is None
            ):  # fewer passed than chained: entries deleted (found above when verified from 1)
                return fail(None, f"{size - passed:,} chained entries are gone from the log")
            seq = await conn.fetchval(COUNT_CHAINED_BEFORE, *slipped) + 1
            return fail(
                seq,
                f"entry {slipped['entry_id']} is in the log but not in the chain: written behind the integrator's "
                "back, where this seq would have been",
            )
        report.pending = await conn.fetchval(COUNT_ALL) - passed
    report.unsigned = expected - 1 - max(last_signed, from_seq - 1)
    report.key_ids = sorted(run.used_keys)
    report.seconds = time.perf_counter() - run.started
    return report


def verify_export(path: Path, trusted: dict[str, bytes]) -> Report:
    """Check an NDJSON export offline, with the public key alone: the signature over the whole file and the
    checkpoint on its last line, then every entry's hash and inclusion proof. Two passes, one line in memory."""
    run = _Run(trusted)
    report, fail = run.report, run.fail
    digest, before_last, last = hashlib.sha256(), None, b""
    with path.open("rb") as f:
        for raw in f:
            if raw.strip():
                before_last, last = digest.copy(), raw
            digest.update(raw)
    try:
        end = msgspec.json.decode(last, type=ExportEnd)
    except msgspec.DecodeError:
        return fail(None, "the last line is not the export's signed end: the export is cut short")
    key = trusted.get(end.key_id)
    if key is None:
        return fail(None, f"the export is signed by key {end.key_id}, which is not trusted")
    cp = end.checkpoint
    size = cp.tree_size if cp else 0
    body = chain.export_body(size, end.entries, end.sha256, msgspec.json.encode(end.filter, order="sorted"))
    if not crypto.signature_valid(key, end.signature, body):
        return fail(None, "the export's signature is not valid")
    if before_last is None or end.sha256 != before_last.digest():
        return fail(None, "the export was changed: lines were added, removed or edited after it was signed")
    if cp is None:
        return fail(None, "no checkpoint, yet the export holds entries") if end.entries else report
    if problem := run.bad_checkpoint(cp, cp.root_hash, 0):
        return fail(None, problem)
    report.checkpoints, report.key_ids = 1, sorted(run.used_keys)
    decoder = msgspec.json.Decoder(ExportedEntry)  # payload as Raw: its exact bytes, as hashed
    previous = 0
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip() or raw == last:
                continue
            try:
                e = decoder.decode(raw)
            except msgspec.DecodeError as exc:
                return fail(None, f"line {number} is not an export line ({exc})")
            if not previous < e.seq <= cp.tree_size:
                return fail(e.seq, f"line {number} is out of order or beyond the checkpoint")
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
    if report.entries != end.entries:
        return fail(None, f"the export says {end.entries} entries, the file holds {report.entries}")
    report.seconds = time.perf_counter() - run.started
    return report
