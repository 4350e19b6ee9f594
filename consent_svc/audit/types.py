"""Wire types of the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from uuid import UUID

import msgspec


class AuditEntry(msgspec.Struct, frozen=True):
    seq: int | None
    """Position in the Merkle tree, from 1; null for the second or so before the integrator appends it."""
    entry_id: UUID
    at: datetime
    action: str
    """`consent.recorded`, `decision.made`, `decision.replayed`, `policy.loaded`, `key.created`, `key.revoked`."""
    actor: str
    """The API key id that asked, or `system`."""
    subject_id: UUID | None
    outcome: str | None
    """`allowed`/`denied` for decisions, the status for consents."""
    payload: dict[str, Any]


class AuditPage(msgspec.Struct, frozen=True):
    entries: list[AuditEntry]
    next_cursor: str | None


class Checkpoint(msgspec.Struct, frozen=True):
    tree_size: int
    """The checkpoint covers entries seq 1..tree_size."""
    root_hash: bytes
    signed_at: datetime
    key_id: str
    signature: bytes
    """Ed25519 over `signed_note` (base64)."""
    signed_note: str
    """The exact text signed: origin, tree size, base64 root hash, signing time (a C2SP checkpoint body)."""


class CheckpointPage(msgspec.Struct, frozen=True):
    checkpoints: list[Checkpoint]
    next_cursor: str | None


class PublicKey(msgspec.Struct, frozen=True):
    key_id: str
    public_key: bytes
    """Raw 32-byte Ed25519 public key (base64)."""
    algorithm: Literal["Ed25519"] = "Ed25519"
    pem: str = ""


class Neighbour(msgspec.Struct, frozen=True):
    seq: int
    entry_id: UUID
    leaf_hash: bytes


class EntryProof(msgspec.Struct, frozen=True):
    """An entry with what proves it is in the log: its leaf hash, an RFC 9162 inclusion proof against a signed
    checkpoint, and the entries beside it in the tree."""

    entry: AuditEntry
    leaf_hash: bytes
    inclusion_proof: list[bytes]
    checkpoint: Checkpoint
    previous: Neighbour | None
    next: Neighbour | None


class ExportedEntry(msgspec.Struct, frozen=True, omit_defaults=False):
    """One NDJSON line of an export: the entry's fields as hashed (payload verbatim), its leaf hash and its
    inclusion proof against the checkpoint on the export's last line."""

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


class ExportEnd(msgspec.Struct, frozen=True):
    """An export's last line: the checkpoint its proofs lead to, and a signature over the export itself."""

    checkpoint: Checkpoint | None
    """None only when the log is empty."""
    entries: int
    filter: dict[str, Any]
    sha256: bytes
    """Of every byte of the export before this line."""
    key_id: str
    signature: bytes
    """Ed25519 over `signed_note`."""
    signed_note: str
    """The exact text signed (audit/chain.export_body): tree size, entries, the digest, the filter."""


class TimelineItem(msgspec.Struct, frozen=True):
    at: datetime
    kind: Literal["consent", "decision", "request", "other"]
    action: str
    summary: str
    """One line for a reviewer, e.g. `denied personalization in DE: no consent (eu_gdpr, policy 2026-06+...)`."""
    entry_id: UUID
    seq: int | None
    actor: str
    outcome: str | None
    payload: dict[str, Any]


class Timeline(msgspec.Struct, frozen=True):
    subject_id: UUID
    items: list[TimelineItem]
    next_cursor: str | None
