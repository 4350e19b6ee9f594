"""The audit log's Merkle tree (RFC 9162 section 2.1), pure: leaf and node hashes, the growing right edge,
inclusion proofs, and the text a checkpoint signs.

Entries are leaves in the order the integrator appends them; seq is 1-based, so leaf index = seq - 1 and a
tree of size n holds seq 1..n. Each stored leaf row also keeps the hashes of the complete subtrees it closes
(levels 1..k, where k = trailing ones of its leaf index), so any subtree hash is one primary-key look-up:
subtree (level, index) is closed by seq (index + 1) * 2**level.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime
from uuid import UUID

import msgspec

HASH_BYTES = 32
ENTRY_FORMAT = 1
CHECKPOINT_ORIGIN = "consent-svc audit log"
EXPORT_ORIGIN = "consent-svc audit export"
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node = tuple[int, int]
"""(level, seq of the leaf that closes it): where a subtree hash is stored."""


def canonical(
    entry_id: UUID,
    at: datetime,
    action: str,
    actor: str,
    subject_id: UUID | None,
    outcome: str | None,
    payload: bytes,
) -> bytes:
    """The bytes a leaf hashes: a compact JSON array, the payload embedded verbatim (it is stored as compact
    JSON with sorted keys, so `json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)`
    of an exported line's fields gives the same bytes)."""
    return msgspec.json.encode(
        [ENTRY_FORMAT, entry_id, at, action, actor, subject_id, outcome, msgspec.Raw(payload)]
    )


def leaf_hash(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


class Frontier:
    """The roots of the complete subtrees along the tree's right edge, largest first: enough to append a leaf
    and to compute the root, in O(log n) memory (verify streams any number of entries through one)."""

    __slots__ = ("levels", "hashes", "size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self.size = size
        self.levels = [b for b in range(size.bit_length() - 1, -1, -1) if size >> b & 1]
        self.hashes = list(hashes)
        if len(self.hashes) != len(self.levels):
            raise ValueError(f"a tree of {size} leaves has {len(self.levels)} edge subtrees")

    def append(self, leaf: bytes) -> list[bytes]:
        """Add a leaf hash; returns the hashes of the subtrees it closes, level 1 upwards."""
        levels, hashes = self.levels, self.hashes
        level, value = 0, leaf
        closed = []
        while levels and levels[-1] == level:
            levels.pop()
            value = node_hash(hashes.pop(), value)
            level += 1
            closed.append(value)
        levels.append(level)
        hashes.append(value)
        self.size += 1
        return closed

    def root(self) -> bytes:
        if not self.hashes:
            return EMPTY_ROOT
        value = self.hashes[-1]
        for left in reversed(self.hashes[:-1]):
            value = node_hash(left, value)
        return value


def edge_nodes(size: int) -> list[Node]:
    """Where the frontier of a tree of `size` leaves is stored."""
    out, start = [], 0
    for level in range(size.bit_length() - 1, -1, -1):
        if size >> level & 1:
            start += 1 << level
            out.append((level, start))
    return out


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _range_nodes(start: int, end: int) -> list[Node]:
    """Complete aligned subtrees covering leaves [start, end) of a left-balanced tree, left to right."""
    out = []
    while start < end:
        size = 1 << ((end - start).bit_length() - 1)
        out.append((size.bit_length() - 1, start + size))
        start += size
    return out


def _subtree_hash(start: int, end: int, get: Callable[[Node], bytes]) -> bytes:
    """MTH(D[start:end]) from stored complete subtrees (start is aligned to the subtree it begins)."""
    hashes = [get(node) for node in _range_nodes(start, end)]
    value = hashes[-1]
    for left in reversed(hashes[:-1]):
        value = node_hash(left, value)
    return value


def _path_ranges(index: int, start: int, end: int) -> list[tuple[int, int]]:
    """RFC 9162 2.1.3.1 PATH(m, D[n]) as the leaf ranges whose hashes form the proof, bottom up."""
    if end - start <= 1:
        return []
    k = _split(end - start)
    if index < start + k:
        return [*_path_ranges(index, start, start + k), (start + k, end)]
    return [*_path_ranges(index, start + k, end), (start, start + k)]


def proof_nodes(seq: int, tree_size: int) -> list[Node]:
    """Every stored subtree an inclusion proof of `seq` in a tree of `tree_size` reads (fetch them at once)."""
    return [node for a, b in _path_ranges(seq - 1, 0, tree_size) for node in _range_nodes(a, b)]


def inclusion_proof(seq: int, tree_size: int, get: Callable[[Node], bytes]) -> list[bytes]:
    return [_subtree_hash(a, b, get) for a, b in _path_ranges(seq - 1, 0, tree_size)]


def root_from_proof(seq: int, tree_size: int, leaf: bytes, proof: list[bytes]) -> bytes | None:
    """RFC 9162 2.1.3.2: the root an inclusion proof leads to, or None if the proof has the wrong shape."""
    if not 1 <= seq <= tree_size:
        return None
    fn, sn, value = seq - 1, tree_size - 1, leaf
    for p in proof:
        if sn == 0:
            return None
        if fn & 1 or fn == sn:
            value = node_hash(p, value)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            value = node_hash(value, p)
        fn >>= 1
        sn >>= 1
    return value if sn == 0 else None


def checkpoint_body(tree_size: int, root: bytes, signed_at: datetime) -> bytes:
    """What a checkpoint's Ed25519 signature covers: a C2SP tlog-checkpoint note body (origin, size, base64
    root) with the signing time as an extension line."""
    when = msgspec.json.encode(signed_at).decode().strip('"')
    return f"{CHECKPOINT_ORIGIN}\n{tree_size}\n{base64.b64encode(root).decode()}\nsigned_at {when}\n".encode()


def export_body(tree_size: int, entries: int, digest: bytes, filter_json: bytes) -> bytes:
    """What an export's closing signature covers: the checkpoint's tree size, how many entries, the SHA-256 of
    every byte before the closing line, and the filter (compact sorted JSON). A line removed, added or changed
    anywhere in the file breaks it."""
    return (
        f"{EXPORT_ORIGIN}\n{tree_size}\n{entries}\n{base64.b64encode(digest).decode()}\n"
        f"filter {filter_json.decode()}\n"
    ).encode()


def split_nodes(nodes: bytes) -> list[bytes]:
    return [nodes[i : i + HASH_BYTES] for i in range(0, len(nodes), HASH_BYTES)]
