"""appliance/audit/merkle.py against the Certificate Transparency reference vectors
(tests/vectors/merkle/rfc6962_ct.json), named mutations, and Hypothesis properties."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.audit.merkle import (
    EMPTY_ROOT,
    CompactRange,
    MerkleTree,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)
from appliance.errors import VerificationError

VECTORS = json.loads(
    (Path(__file__).parents[2] / "vectors" / "merkle" / "rfc6962_ct.json").read_text()
)
LEAVES = [leaf_hash(bytes.fromhex(x)) for x in VECTORS["leaf_inputs"]]
ROOTS = [bytes.fromhex(x) for x in VECTORS["root_hashes"]]
TREE = MerkleTree(LEAVES)
SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def hx(items: list[str]) -> tuple[bytes, ...]:
    return tuple(bytes.fromhex(x) for x in items)


def naive_root(leaves: list[bytes]) -> bytes:
    """MTH straight from RFC 6962 §2.1."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return node_hash(naive_root(leaves[:k]), naive_root(leaves[k:]))


def test_empty_root_and_domain_separation() -> None:
    assert EMPTY_ROOT == ROOTS[0]
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert node_hash(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()


@pytest.mark.parametrize("size", range(len(ROOTS)))
def test_roots_match_vectors(size: int) -> None:
    assert TREE.root(size) == ROOTS[size]
    assert root_from_leaf_hashes(LEAVES[:size]) == ROOTS[size]


@pytest.mark.parametrize("level", range(len(VECTORS["node_hashes"])))
def test_node_hashes_match_vectors(level: int) -> None:
    for index, expected in enumerate(VECTORS["node_hashes"][level]):
        assert TREE.node(level, index).hex() == expected


@pytest.mark.parametrize("size", range(len(VECTORS["compact_trees"])))
def test_compact_ranges_match_vectors(size: int) -> None:
    compact = CompactRange()
    for leaf in LEAVES[:size]:
        compact.append(leaf)
    assert compact.hashes == hx(VECTORS["compact_trees"][size])
    assert compact.root() == ROOTS[size]


@pytest.mark.parametrize(
    "vector", VECTORS["inclusion_proofs"], ids=lambda v: f"{v['leaf_index']}@{v['tree_size']}"
)
def test_inclusion_proofs_match_vectors(vector: dict[str, Any]) -> None:
    index, size = vector["leaf_index"], vector["tree_size"]
    proof = TREE.inclusion_proof(index, size)
    assert proof.hashes == hx(vector["proof"])
    verify_inclusion(LEAVES[index], index, size, proof.hashes, ROOTS[size])


@pytest.mark.parametrize(
    "vector", VECTORS["consistency_proofs"], ids=lambda v: f"{v['size1']}-{v['size2']}"
)
def test_consistency_proofs_match_vectors(vector: dict[str, Any]) -> None:
    old, new = vector["size1"], vector["size2"]
    proof = TREE.consistency_proof(old, new)
    assert proof.hashes == hx(vector["proof"])
    verify_consistency(old, new, ROOTS[old], ROOTS[new], proof.hashes)


def _inclusion_mutations(index: int, size: int, proof: tuple[bytes, ...]) -> list[tuple[str, Any]]:
    """The probes of transparency-dev/merkle proof/verify_test.go, by name."""
    root, leaf = ROOTS[size], LEAVES[index]
    out: list[tuple[str, Any]] = [
        ("wrong-index-minus-1", (leaf, index - 1, size, proof, root)),
        ("wrong-index-plus-1", (leaf, index + 1, size, proof, root)),
        ("wrong-index-xor-2", (leaf, index ^ 2, size, proof, root)),
        ("wrong-size-double", (leaf, index, size * 2, proof, root)),
        ("wrong-size-half", (leaf, index, size // 2, proof, root)),
        ("wrong-leaf", (leaf_hash(b"WrongLeaf"), index, size, proof, root)),
        ("empty-root", (leaf, index, size, proof, EMPTY_ROOT)),
        ("random-root", (leaf, index, size, proof, SOME_HASH)),
        ("trailing-root", (leaf, index, size, (*proof, root), root)),
        ("preceding-root", (leaf, index, size, (root, *proof), root)),
    ]
    for i in range(len(proof)):
        flipped = bytes([proof[i][0] ^ 8]) + proof[i][1:]
        out.append(
            (f"flipped-bit-{i}", (leaf, index, size, (*proof[:i], flipped, *proof[i + 1 :]), root))
        )
    if proof:
        out.append(("truncated-proof", (leaf, index, size, proof[:-1], root)))
    if len(proof) > 1:
        out.append(("inserted-hash", (leaf, index, size, (proof[0], SOME_HASH, *proof[1:]), root)))
    return out


INCLUSION_MUTATIONS = [
    pytest.param(args, id=f"{v['leaf_index']}@{v['tree_size']}-{name}")
    for v in VECTORS["inclusion_proofs"]
    for name, args in _inclusion_mutations(v["leaf_index"], v["tree_size"], hx(v["proof"]))
]


@pytest.mark.parametrize("args", INCLUSION_MUTATIONS)
def test_mutated_inclusion_proofs_fail(args: tuple[Any, ...]) -> None:
    with pytest.raises(VerificationError):
        verify_inclusion(*args)


def _consistency_mutations(old: int, new: int, proof: tuple[bytes, ...]) -> list[tuple[str, Any]]:
    r1, r2 = ROOTS[old], ROOTS[new]
    out: list[tuple[str, Any]] = [
        ("wrong-size1-minus-1", (old - 1, new, r1, r2, proof)),
        ("wrong-size1-plus-1", (old + 1, new, r1, r2, proof)),
        ("wrong-size1-xor-2", (old ^ 2, new, r1, r2, proof)),
        ("wrong-size2-double", (old, new * 2, r1, r2, proof)),
        ("wrong-size2-half", (old, new // 2, r1, r2, proof)),
        ("wrong-root1", (old, new, SOME_HASH, r2, proof)),
        ("wrong-root2", (old, new, r1, SOME_HASH, proof)),
        ("swapped-roots", (old, new, r2, r1, proof)),
        ("empty-proof", (old, new, r1, r2, ())),
        ("trailing-root1", (old, new, r1, r2, (*proof, r1))),
        ("trailing-root2", (old, new, r1, r2, (*proof, r2))),
        ("preceding-root1", (old, new, r1, r2, (r1, *proof))),
        ("preceding-root2", (old, new, r1, r2, (r2, *proof))),
        ("preceding-proof0", (old, new, r1, r2, (proof[0], *proof))),
        ("truncated-proof", (old, new, r1, r2, proof[:-1])),
    ]
    for i in range(len(proof)):
        flipped = bytes([proof[i][0] ^ 16]) + proof[i][1:]
        out.append((f"flipped-bit-{i}", (old, new, r1, r2, (*proof[:i], flipped, *proof[i + 1 :]))))
    return out


CONSISTENCY_MUTATIONS = [
    pytest.param(args, id=f"{v['size1']}-{v['size2']}-{name}")
    for v in VECTORS["consistency_proofs"]
    if v["proof"]
    for name, args in _consistency_mutations(v["size1"], v["size2"], hx(v["proof"]))
]


@pytest.mark.parametrize("args", CONSISTENCY_MUTATIONS)
def test_mutated_consistency_proofs_fail(args: tuple[Any, ...]) -> None:
    with pytest.raises(VerificationError):
        verify_consistency(*args)


@pytest.mark.parametrize(
    ("old", "new", "r1", "r2", "proof", "ok"),
    [
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, (), True),
        (0, 1, EMPTY_ROOT, ROOTS[1], (), True),
        (1, 1, ROOTS[1], ROOTS[1], (), True),
        (1, 0, ROOTS[1], EMPTY_ROOT, (), False),  # time travel
        (2, 1, ROOTS[2], ROOTS[1], (), False),
        (1, 2, ROOTS[1], ROOTS[2], (), False),  # empty proof
        (1, 1, ROOTS[1], ROOTS[2], (), False),  # two roots for one size
        (1, 1, ROOTS[1], ROOTS[1], (EMPTY_ROOT,), False),  # roots match, proof not empty
        (0, 1, EMPTY_ROOT, ROOTS[1], (EMPTY_ROOT,), False),
    ],
)
def test_consistency_edge_cases(
    old: int, new: int, r1: bytes, r2: bytes, proof: Any, ok: bool
) -> None:
    if ok:
        verify_consistency(old, new, r1, r2, proof)
    else:
        with pytest.raises(VerificationError):
            verify_consistency(old, new, r1, r2, proof)


def test_inclusion_edge_cases() -> None:
    for index, size in [(0, 0), (1, 0), (2, 1)]:
        with pytest.raises(VerificationError):
            verify_inclusion(SOME_HASH, index, size, (), EMPTY_ROOT)
    with pytest.raises(VerificationError):
        verify_inclusion(b"short", 0, 1, (), b"short")
    with pytest.raises(ValueError, match="outside"):
        TREE.inclusion_proof(8, 8)
    with pytest.raises(ValueError, match="no consistency"):
        TREE.consistency_proof(5, 4)


def test_compact_range_rejects_a_wrong_frontier() -> None:
    with pytest.raises(ValueError, match="frontier"):
        CompactRange(3, [EMPTY_ROOT])


# -- properties -------------------------------------------------------------------------

leaves_strategy = st.lists(st.binary(max_size=8), min_size=1, max_size=70).map(
    lambda items: [leaf_hash(item) for item in items]
)


@settings(max_examples=60, deadline=None)
@given(leaves_strategy)
def test_appended_root_equals_naive_recomputation(leaves: list[bytes]) -> None:
    tree, compact = MerkleTree(), CompactRange()
    for count, leaf in enumerate(leaves, start=1):
        tree.append(leaf)
        compact.append(leaf)
        assert tree.root() == compact.root() == naive_root(leaves[:count])


@settings(max_examples=60, deadline=None)
@given(leaves_strategy, st.data())
def test_every_inclusion_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    size = data.draw(st.integers(1, len(leaves)))
    index = data.draw(st.integers(0, size - 1))
    proof = tree.inclusion_proof(index, size)
    assert len(proof.hashes) <= (size - 1).bit_length()
    verify_inclusion(leaves[index], index, size, proof.hashes, tree.root(size))
    other = data.draw(st.integers(0, size - 1))
    if leaves[other] != leaves[index]:
        with pytest.raises(VerificationError):
            verify_inclusion(leaves[other], index, size, proof.hashes, tree.root(size))


@settings(max_examples=60, deadline=None)
@given(leaves_strategy, st.data())
def test_every_consistency_proof_verifies(leaves: list[bytes], data: st.DataObject) -> None:
    tree = MerkleTree(leaves)
    new = data.draw(st.integers(0, len(leaves)))
    old = data.draw(st.integers(0, new))
    proof = tree.consistency_proof(old, new)
    assert len(proof.hashes) <= max(new - 1, 0).bit_length() + 1
    verify_consistency(old, new, tree.root(old), tree.root(new), proof.hashes)


@settings(max_examples=40, deadline=None)
@given(leaves_strategy, st.data())
def test_a_changed_prefix_is_inconsistent(leaves: list[bytes], data: st.DataObject) -> None:
    new = data.draw(st.integers(2, max(len(leaves), 2)))
    if new > len(leaves):
        return
    old = data.draw(st.integers(1, new - 1))
    changed = list(leaves)
    changed[data.draw(st.integers(0, old - 1))] = leaf_hash(b"tampered")
    if changed[:old] == leaves[:old]:
        return
    tree, forked = MerkleTree(leaves), MerkleTree(changed)
    proof = forked.consistency_proof(old, new)
    with pytest.raises(VerificationError):
        verify_consistency(old, new, tree.root(old), forked.root(new), proof.hashes)
