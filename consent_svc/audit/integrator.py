"""The integrator: appends committed entries to the Merkle tree and signs checkpoints of it.

Entries are written by many transactions at once and commit in any order, so they cannot be chained as they
are written without serializing every writer. Instead every worker runs this loop, and each round one of them
(the one holding the advisory lock) appends what has committed since the last round:

- Each entry carries the id of the transaction that wrote it (`txid`). Every transaction older than the
  snapshot's xmin (the horizon) has finished, so the entries with txid below it are all there will ever be:
  taking them in (txid, entry_id) order after the last one chained misses none and takes none twice, however
  the writers interleaved. A transaction still open holds the horizon back until it ends.
- The hot path pays for one index entry and nothing else: no hashing, no lock, no sequence.

An entry is chained within INTEGRATE_SECONDS (plus the round's own time) of its commit; a signed checkpoint
follows every `audit_checkpoint_seconds` while the tree grows, and at once when an export or a proof needs
one (`round(checkpoint=True)`) or the service stops.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from uuid import UUID

import asyncpg

from consent_svc import crypto, tasks
from consent_svc.audit import chain
from consent_svc.audit import store as audit_store
from consent_svc.audit.types import Checkpoint

log = logging.getLogger("consent_svc.audit")

INTEGRATE_SECONDS = 0.5
MAX_DELAY_SECONDS = 1.0  # what the README and the test promise: commit to chained, under normal load
CHUNK = 5_000
CHECKPOINT_WAIT_SECONDS = 5.0
MAX_PER_ROUND = 100_000  # a backlog (a migration's worth of entries) goes in several transactions
INTEGRATOR_LOCK = 0x636F6E73656E7405
ZERO_UUID = UUID(int=0)

SELECT_HEAD = """
SELECT c.seq, c.entry_id, e.txid
FROM audit_chain c
LEFT JOIN audit_log e ON e.at = c.at AND e.entry_id = c.entry_id
ORDER BY c.seq DESC
LIMIT 1
"""
SELECT_HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())"
SELECT_NOW_XMAX = "SELECT pg_snapshot_xmax(pg_current_snapshot())"
SELECT_COMMITTED = """
SELECT txid, entry_id, at, action, actor, subject_id, outcome, payload
FROM audit_log
WHERE (txid, entry_id) > ($1::xid8, $2::uuid) AND txid < $3::xid8
ORDER BY txid, entry_id
LIMIT $4
"""
CHAIN_COLUMNS = ("seq", "entry_id", "at", "leaf_hash", "nodes")
INSERT_CHECKPOINT = """
INSERT INTO audit_checkpoints (tree_size, root_hash, signed_at, key_id, signature) VALUES ($1, $2, $3, $4, $5)
"""


class ChainBroken(Exception):
    """The chain's last entry is gone from the log: someone changed the database; `audit verify` says where."""


async def frontier_of(conn: asyncpg.Connection, size: int) -> chain.Frontier:
    nodes = chain.edge_nodes(size)
    stored = await audit_store.subtree_hashes(conn, nodes)
    if len(stored) != len(nodes):
        raise ChainBroken(f"the tree's stored nodes for size {size} are incomplete")
    return chain.Frontier(size, [stored[node] for node in nodes])


async def integrate(conn: asyncpg.Connection, limit: int = MAX_PER_ROUND) -> tuple[int, chain.Frontier]:
    """Chain the entries committed since the last round (the caller holds the lock, in a transaction).
    Returns how many were added and the tree's frontier after them."""
    head = await conn.fetchrow(SELECT_HEAD)
    size, after = 0, (0, ZERO_UUID)
    if head is not None:
        if head["txid"] is None:
            raise ChainBroken(f"the entry at seq {head['seq']} is missing from audit_log")
        size, after = head["seq"], (head["txid"], head["entry_id"])
    horizon = await conn.fetchval(SELECT_HORIZON)
    if horizon <= after[0]:
        # Transaction ids went backwards: the database was restored from a dump (or moved by logical
        # replication) and new entries would sort before the chain's head forever. Say so rather than skip them.
        raise ChainBroken(
            f"this database's transaction ids ({horizon}) are below the chain head's ({after[0]}): restored from a "
            "dump? New entries cannot be integrated until the log is re-based"
        )
    frontier = await frontier_of(conn, size)
    added = 0
    while added < limit:
        rows = await conn.fetch(SELECT_COMMITTED, *after, horizon, min(CHUNK, limit - added))
        if not rows:
            break
        links = []
        for txid, entry_id, at, action, actor, subject_id, outcome, body in rows:
            leaf = chain.leaf_hash(chain.canonical(entry_id, at, action, actor, subject_id, outcome, body))
            closed = frontier.append(leaf)
            links.append((frontier.size, entry_id, at, leaf, b"".join(closed)))
            after = (txid, entry_id)
        await conn.copy_records_to_table("audit_chain", columns=CHAIN_COLUMNS, records=links)
        added += len(rows)
        if len(rows) < CHUNK:
            break
    return added, frontier


async def sign(conn: asyncpg.Connection, signer: crypto.Signer, frontier: chain.Frontier) -> None:
    """Write a signed checkpoint of the tree as it stands (the caller holds the lock)."""
    signed_at = datetime.now(UTC)
    root = frontier.root()
    signature = signer.sign(chain.checkpoint_body(frontier.size, root, signed_at))
    await conn.execute(INSERT_CHECKPOINT, frontier.size, root, signed_at, signer.key_id, signature)


class Integrator(tasks.Background):
    """One per worker; rounds of all workers take turns under one advisory lock."""

    def __init__(self, signer: crypto.Signer, checkpoint_seconds: float) -> None:
        self.signer = signer
        self.checkpoint_seconds = checkpoint_seconds

    async def stop(self) -> None:
        """Chain and sign what is there, so a verify right after a stop covers everything."""
        await super().stop()
        try:
            await self.round(checkpoint=True)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError, ChainBroken) as exc:
            log.warning("audit log not signed at stop: %s", type(exc).__name__)

    async def _run(self) -> None:
        while True:
            try:
                while await self.round() == MAX_PER_ROUND:
                    pass  # a backlog: keep going
            except ChainBroken as exc:
                log.error("audit chain not extended: %s; run `consent-svc audit verify`", exc)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("audit integration skipped: %s", type(exc).__name__)
            await asyncio.sleep(INTEGRATE_SECONDS)

    async def round(self, checkpoint: bool = False) -> int | None:
        """One round; with `checkpoint`, wait for the lock and sign the tree if it grew since the last
        checkpoint. Returns the entries added (None: another worker holds the lock)."""
        # Read committed whatever the server's default: the head must be read after the lock is granted.
        async with self.pool.acquire() as conn, conn.transaction(isolation="read_committed"):
            if checkpoint:
                await conn.execute("SELECT pg_advisory_xact_lock($1)", INTEGRATOR_LOCK)
            elif not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", INTEGRATOR_LOCK):
                return None
            added, frontier = await integrate(conn)
            latest = await audit_store.latest_checkpoint(conn)
            grown = frontier.size > (latest.tree_size if latest else 0)
            due = (
                latest is None
                or (datetime.now(UTC) - latest.signed_at).total_seconds() >= self.checkpoint_seconds
            )
            if grown and (checkpoint or due):
                await sign(conn, self.signer, frontier)
            return added

    async def checkpoint(self) -> Checkpoint | None:
        """A signed checkpoint covering every entry committed before this call (None: the log is empty).

        A round chains only what lies below the oldest transaction still running anywhere on the server, so first
        wait (briefly) until everything begun before this call has ended; a CSV export missed three decisions
        answered just before it while some other transaction was open (seen once in CI)."""
        async with self.pool.acquire() as conn:
            target = await conn.fetchval(SELECT_NOW_XMAX)
            deadline = asyncio.get_running_loop().time() + CHECKPOINT_WAIT_SECONDS
            while await conn.fetchval(SELECT_HORIZON) < target:
                if asyncio.get_running_loop().time() > deadline:
                    log.warning(
                        "a long transaction holds the audit horizon back: the checkpoint may miss entries"
                    )
                    break
                await asyncio.sleep(0.01)
        await self.round(checkpoint=True)
        async with self.pool.acquire() as conn:
            return await audit_store.latest_checkpoint(conn)
