"""SQL of the audit log, and functions that run it on a connection the caller holds.

Domains append their entries with `append`, in the transaction that does the action; the integrator
(audit/integrator.py) later chains them into the Merkle tree.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple
from uuid import UUID

import asyncpg
import msgspec

from consent_svc import db, ids
from consent_svc.audit import chain
from consent_svc.audit.types import AuditEntry, Checkpoint, ExportedEntry, Neighbour

ENTRY_COLUMNS = ("entry_id", "at", "action", "actor", "subject_id", "outcome", "payload")
SYSTEM = "system"
# The actions audit_log_by_action leaves out (and the families that include them).
HOT_ACTIONS = frozenset({"decision.made", "consent.recorded", "decision.*", "consent.*", "*"})
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Two texts, not `$1 IS NULL OR ...`: a generic plan must still read the primary key from the cursor on.
SELECT_CHECKPOINTS = """
SELECT tree_size, root_hash, signed_at, key_id, signature FROM audit_checkpoints ORDER BY tree_size DESC LIMIT $1
"""
SELECT_CHECKPOINTS_BELOW = """
SELECT tree_size, root_hash, signed_at, key_id, signature
FROM audit_checkpoints
WHERE tree_size < $1
ORDER BY tree_size DESC
LIMIT $2
"""
SELECT_LATEST_CHECKPOINT = """
SELECT tree_size, root_hash, signed_at, key_id, signature FROM audit_checkpoints ORDER BY tree_size DESC LIMIT 1
"""
SELECT_BY_SEQ = """
SELECT c.seq, c.leaf_hash, e.entry_id, e.at, e.action, e.actor, e.subject_id, e.outcome, e.payload
FROM audit_chain c
JOIN audit_log e ON e.at = c.at AND e.entry_id = c.entry_id
WHERE c.seq = $1
"""
SELECT_NEIGHBOURS = "SELECT seq, entry_id, leaf_hash FROM audit_chain WHERE seq = ANY($1::bigint[])"
SELECT_NODES = "SELECT seq, leaf_hash, nodes FROM audit_chain WHERE seq = ANY($1::bigint[])"
# Filtered listings: newest first with a keyset cursor. Predicates are constant fragments chosen per filter
# (never values in the text), so each combination gets a plan that uses its index; one text with
# `$n IS NULL OR ...` for every filter ends in a generic plan that scans.
SELECT_ENTRIES = """
SELECT e.entry_id, e.at, e.action, e.actor, e.subject_id, e.outcome, e.payload, c.seq
FROM audit_log e
LEFT JOIN audit_chain c ON c.entry_id = e.entry_id
WHERE {where}
ORDER BY e.at {order}, e.entry_id {order}
LIMIT {limit}
"""
# Exports: oldest first, only what the closing checkpoint covers.
SELECT_EXPORT = """
SELECT c.seq, c.leaf_hash, e.entry_id, e.at, e.action, e.actor, e.subject_id, e.outcome, e.payload
FROM audit_chain c
JOIN audit_log e ON e.at = c.at AND e.entry_id = c.entry_id
WHERE {where}
ORDER BY c.seq
"""
PREDICATES = {
    "subject_id": "e.subject_id = ${}::uuid",
    "action": "e.action = ${}::text",
    "rare_action": "e.action NOT IN ('decision.made', 'consent.recorded')",
    "action_prefix": "e.action LIKE ${}::text",
    "actor": "e.actor = ${}::text",
    "outcome": "e.outcome = ${}::text",
    "since": "e.at >= ${}::timestamptz",
    "until": "e.at < ${}::timestamptz",
    "before": "(e.at, e.entry_id) < (${}::timestamptz, ${}::uuid)",
    "after": "(e.at, e.entry_id) > (${}::timestamptz, ${}::uuid)",
    "covered": "c.seq <= ${}::bigint",
}


class AuditFilter(NamedTuple):
    subject_id: UUID | None = None
    action: str | None = None
    """Exact, or a family ending in `.*` (`request.*`)."""
    actor: str | None = None
    outcome: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def payload(value: Any) -> bytes:
    """Compact JSON with sorted keys: what an entry stores and its leaf hashes (see chain.canonical)."""
    return msgspec.json.encode(value, order="sorted")


def entry(
    action: str,
    actor: str,
    body: Any,
    subject_id: UUID | None = None,
    outcome: str | None = None,
) -> tuple:
    """A row for `append`, made now."""
    unix_ms = ids.now_ms()
    return (ids.uuid7s(1, unix_ms)[0], ms_time(unix_ms), action, actor, subject_id, outcome, payload(body))


def ms_time(unix_ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=unix_ms)


async def append(conn: asyncpg.Connection, rows: Sequence[tuple]) -> None:
    """Rows as ENTRY_COLUMNS (payload: bytes from `payload`)."""
    await db.insert_rows(conn, "audit_log", ENTRY_COLUMNS, list(rows))


def _where(where: AuditFilter, extra: dict[str, Any]) -> tuple[str, list[Any]]:
    given = where._asdict()
    action = given.pop("action")
    if action is not None and action.endswith(".*"):
        given["action_prefix"] = (
            action[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
    else:
        given["action"] = action
    if action is not None and action not in HOT_ACTIONS:
        given["rare_action"] = ()  # lets the plan use audit_log_by_action (its predicate, restated)
    given.update(extra)
    clauses, args = ["true"], []
    for name, value in given.items():
        if value is None:
            continue
        values = value if isinstance(value, tuple) else (value,)  # () for a predicate without parameters
        numbers = range(len(args) + 1, len(args) + 1 + len(values))
        clauses.append(PREDICATES[name].format(*numbers))
        args.extend(values)
    return " AND ".join(clauses), args


def _entry(row: asyncpg.Record, seq: int | None) -> AuditEntry:
    return AuditEntry(
        seq=seq,
        entry_id=row["entry_id"],
        at=row["at"],
        action=row["action"],
        actor=row["actor"],
        subject_id=row["subject_id"],
        outcome=row["outcome"],
        payload=msgspec.json.decode(row["payload"]),
    )


async def search(
    conn: asyncpg.Connection,
    where: AuditFilter,
    cursor: tuple[datetime, UUID] | None,
    limit: int,
    oldest_first: bool = False,
) -> tuple[list[AuditEntry], tuple[datetime, UUID] | None]:
    """Newest first (or oldest first); the cursor of the next page: the last entry's (at, id), None at the end."""
    clauses, args = _where(where, {"after" if oldest_first else "before": cursor})
    order = "ASC" if oldest_first else "DESC"
    rows = await conn.fetch(SELECT_ENTRIES.format(where=clauses, order=order, limit=int(limit) + 1), *args)
    entries = [_entry(row, row["seq"]) for row in rows[:limit]]
    last = entries[-1] if len(rows) > limit else None
    return entries, (last.at, last.entry_id) if last else None


def checkpoint_of(row: asyncpg.Record) -> Checkpoint:
    return Checkpoint(
        tree_size=row["tree_size"],
        root_hash=row["root_hash"],
        signed_at=row["signed_at"],
        key_id=row["key_id"],
        signature=row["signature"],
        signed_note=chain.checkpoint_body(row["tree_size"], row["root_hash"], row["signed_at"]).decode(),
    )


async def latest_checkpoint(conn: asyncpg.Connection) -> Checkpoint | None:
    row = await conn.fetchrow(SELECT_LATEST_CHECKPOINT)
    return checkpoint_of(row) if row else None


async def checkpoints(conn: asyncpg.Connection, below: int | None, limit: int) -> list[Checkpoint]:
    rows = await (
        conn.fetch(SELECT_CHECKPOINTS, limit)
        if below is None
        else conn.fetch(SELECT_CHECKPOINTS_BELOW, below, limit)
    )
    return [checkpoint_of(row) for row in rows]


async def subtree_hashes(conn: asyncpg.Connection, nodes: Sequence[chain.Node]) -> dict[chain.Node, bytes]:
    """The stored hashes of these subtrees (see chain: subtree (level, seq) is in row seq)."""
    rows = {row["seq"]: row for row in await conn.fetch(SELECT_NODES, sorted({seq for _, seq in nodes}))}
    out = {}
    for level, seq in nodes:
        row = rows.get(seq)
        if row is None:
            continue
        if level == 0:
            out[(level, seq)] = row["leaf_hash"]
        elif len(row["nodes"]) >= level * chain.HASH_BYTES:
            out[(level, seq)] = row["nodes"][(level - 1) * chain.HASH_BYTES : level * chain.HASH_BYTES]
    return out


async def proofs(conn: asyncpg.Connection, seqs: Sequence[int], tree_size: int) -> list[list[bytes]]:
    """Inclusion proofs of many entries against one tree size, with one read of the nodes they share."""
    needed = {node for seq in seqs for node in chain.proof_nodes(seq, tree_size)}
    stored = await subtree_hashes(conn, list(needed))
    return [chain.inclusion_proof(seq, tree_size, stored.__getitem__) for seq in seqs]


async def by_seq(
    conn: asyncpg.Connection, seq: int
) -> tuple[AuditEntry, bytes, Neighbour | None, Neighbour | None] | None:
    row = await conn.fetchrow(SELECT_BY_SEQ, seq)
    if row is None:
        return None
    near = {r["seq"]: Neighbour(**dict(r)) for r in await conn.fetch(SELECT_NEIGHBOURS, [seq - 1, seq + 1])}
    return _entry(row, seq), row["leaf_hash"], near.get(seq - 1), near.get(seq + 1)


async def export(
    conn: asyncpg.Connection, where: AuditFilter, tree_size: int, chunk: int = 500
) -> AsyncIterator[list[ExportedEntry]]:
    """Matching entries up to `tree_size`, oldest first, in chunks, each with its inclusion proof. Runs in
    the caller's transaction (a cursor needs one); memory holds one chunk."""
    clauses, args = _where(where, {"covered": tree_size})
    cursor = await conn.cursor(SELECT_EXPORT.format(where=clauses), *args)
    while rows := await cursor.fetch(chunk):
        paths = await proofs(conn, [row["seq"] for row in rows], tree_size)
        yield [
            ExportedEntry(
                seq=row["seq"],
                entry_id=row["entry_id"],
                at=row["at"],
                action=row["action"],
                actor=row["actor"],
                subject_id=row["subject_id"],
                outcome=row["outcome"],
                payload=msgspec.Raw(row["payload"]),
                leaf_hash=row["leaf_hash"],
                inclusion_proof=path,
            )
            for row, path in zip(rows, paths, strict=True)
        ]
