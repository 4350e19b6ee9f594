"""The Merkle tree against RFC 9162's recursive definition, and its inclusion proofs."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consent_svc.audit import chain


def reference_root(leaves: list[bytes]) -> bytes:
    """MTH(D[n]) exactly as RFC 9162 2.1.1 defines it."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return chain.node_hash(reference_root(leaves[:k]), reference_root(leaves[k:]))


def grow(n: int) -> tuple[list[bytes], dict[chain.Node, bytes], chain.Frontier]:
    """n leaves appended one by one, with the subtree hashes each closes stored as the integrator does."""
    frontier = chain.Frontier()
    leaves, stored = [], {}
    for seq in range(1, n + 1):
        leaf = chain.leaf_hash(seq.to_bytes(8, "big"))
        leaves.append(leaf)
        stored[(0, seq)] = leaf
        for level, node in enumerate(frontier.append(leaf), start=1):
            stored[(level, seq)] = node
    return leaves, stored, frontier


@pytest.mark.parametrize("n", [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 32, 33, 100])
def test_root_matches_the_rfc_definition_at_every_size(n):
    leaves, _, frontier = grow(n)
    assert frontier.root() == reference_root(leaves)


def test_frontier_rebuilt_from_stored_edge_continues_the_same_tree():
    leaves, stored, _ = grow(37)
    resumed = chain.Frontier(37, [stored[node] for node in chain.edge_nodes(37)])
    more = [chain.leaf_hash(b"x%d" % i) for i in range(20)]
    for leaf in more:
        resumed.append(leaf)
    assert resumed.root() == reference_root(leaves + more)


def test_frontier_refuses_an_edge_of_the_wrong_length():
    with pytest.raises(ValueError):
        chain.Frontier(5, [b"\0" * 32])


@given(st.integers(1, 300).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))))
def test_every_inclusion_proof_leads_to_the_root(case):
    n, seq = case
    leaves, stored, frontier = grow(n)
    needed = chain.proof_nodes(seq, n)
    assert set(needed) <= stored.keys()  # every node a proof reads is one the integrator stored
    proof = chain.inclusion_proof(seq, n, stored.__getitem__)
    assert len(proof) <= (n - 1).bit_length()
    assert chain.root_from_proof(seq, n, leaves[seq - 1], proof) == frontier.root()


@pytest.mark.parametrize("n,seq", [(1, 1), (2, 1), (7, 5), (8, 8), (300, 129)])
def test_a_proof_fails_for_another_leaf_position_or_a_changed_hash(n, seq):
    leaves, stored, frontier = grow(n)
    proof = chain.inclusion_proof(seq, n, stored.__getitem__)
    root = frontier.root()
    other = leaves[seq % n]
    if n > 1:
        assert chain.root_from_proof(seq, n, other, proof) != root
        assert chain.root_from_proof(seq % n + 1, n, leaves[seq - 1], proof) != root
    if proof:
        bad = [proof[0][:-1] + bytes([proof[0][-1] ^ 1]), *proof[1:]]
        assert chain.root_from_proof(seq, n, leaves[seq - 1], bad) != root
    assert chain.root_from_proof(seq, n, leaves[seq - 1], [*proof, b"\0" * 32]) is None
    assert chain.root_from_proof(n + 1, n, leaves[seq - 1], proof) is None


def test_canonical_encoding_is_reproducible_from_an_exported_line():
    import json
    from datetime import UTC, datetime
    from uuid import UUID

    payload = json.dumps(
        {"é": "\x01", "a": [1, None]}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    entry_id = UUID("01890a5d-ac96-774b-bcce-b302099a8057")
    at = datetime(2026, 1, 2, 3, 4, 5, 123400, tzinfo=UTC)
    data = chain.canonical(entry_id, at, "consent.recorded", "k1", None, "granted", payload.encode())
    line = {"entry_id": str(entry_id), "at": "2026-01-02T03:04:05.123400Z", "payload": json.loads(payload)}
    again = json.dumps(
        [1, line["entry_id"], line["at"], "consent.recorded", "k1", None, "granted", line["payload"]],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()
    assert data == again
