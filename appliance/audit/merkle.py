"""RFC 6962 / RFC 9162 Merkle tree math: hashes, proofs, proof verification.

Pure: no I/O, no clock. Storage is passed in as a function (``NodeReader``) that
returns the hash of a complete ("perfect") subtree, so the same code serves an
in-memory tree, a database and a verifier that holds only a proof.

References:
- RFC 6962 §2.1 (tree hash), §2.1.1 (audit paths), §2.1.2 (consistency proofs);
- RFC 9162 §2.1.3.2 (verifying an inclusion proof), §2.1.4.2 (verifying a
  consistency proof), whose numbered steps the ``verify_*`` functions follow.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from appliance.errors import VerificationError

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "ConsistencyProof",
    "InclusionProof",
    "MerkleTree",
    "NodeReader",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "subtree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()  # RFC 6962 §2.1: MTH({}) = SHA-256()

# (level, index) -> hash of the perfect subtree covering leaves
# [index * 2**level, (index + 1) * 2**level).
NodeReader = Callable[[int, int], bytes]


def leaf_hash(data: bytes) -> bytes:
    """RFC 6962 §2.1: MTH({d}) = SHA-256(0x00 || d)."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """RFC 6962 §2.1: SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True)
class ConsistencyProof:
    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]


def subtree_hash(start: int, end: int, node: NodeReader) -> bytes:
    """MTH(D[start:end]) from perfect-subtree hashes (RFC 6962 §2.1).

    ``start`` must be aligned the way RFC 6962's recursion produces ranges: the range
    is split into a perfect left part and a (possibly incomplete) right part."""
    n = end - start
    if n <= 0:
        return EMPTY_ROOT
    if n & (n - 1) == 0 and start % n == 0:
        level = n.bit_length() - 1
        return node(level, start >> level)
    k = _split(n)
    return node_hash(subtree_hash(start, start + k, node), subtree_hash(start + k, end, node))


def inclusion_proof(index: int, size: int, node: NodeReader) -> InclusionProof:
    """PATH(m, D[n]) of RFC 6962 §2.1.1, leaf first, root last."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    path: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        k = _split(end - start)
        if index < start + k:
            path.append(subtree_hash(start + k, end, node))
            end = start + k
        else:
            path.append(subtree_hash(start, start + k, node))
            start = start + k
    path.reverse()
    return InclusionProof(leaf_index=index, tree_size=size, hashes=tuple(path))


def consistency_proof(old_size: int, new_size: int, node: NodeReader) -> ConsistencyProof:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true) of RFC 6962 §2.1.2."""
    if not 0 <= old_size <= new_size:
        raise ValueError(f"no consistency proof from size {old_size} to {new_size}")
    if old_size in (0, new_size):
        return ConsistencyProof(old_size=old_size, new_size=new_size, hashes=())
    path: list[bytes] = []
    m, start, end, complete = old_size, 0, new_size, True
    while m != end - start:
        k = _split(end - start)
        if m <= k:
            path.append(subtree_hash(start + k, end, node))
            end = start + k
        else:
            path.append(subtree_hash(start, start + k, node))
            m -= k
            start += k
            complete = False
    if not complete:
        path.append(subtree_hash(start, end, node))
    path.reverse()
    return ConsistencyProof(old_size=old_size, new_size=new_size, hashes=tuple(path))


def _check_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise VerificationError(f"{what} is {len(value)} bytes, not {HASH_SIZE}")


def verify_inclusion(
    leaf: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf`` (a leaf hash) is at ``index`` in the tree with ``root``.

    Follows RFC 9162 §2.1.3.2; raises VerificationError on any failure."""
    _check_hash(leaf, "leaf hash")
    _check_hash(root, "root hash")
    for item in proof:
        _check_hash(item, "proof hash")
    # Step 1: leaf_index must be smaller than tree_size.
    if not 0 <= index < size:
        raise VerificationError(f"leaf index {index} is outside a tree of size {size}")
    # Step 2: fn = leaf_index, sn = tree_size - 1. Step 3: r = hash.
    fn, sn, r = index, size - 1, leaf
    # Step 4: for each p in the inclusion path ...
    for p in proof:
        # 4a: if sn is 0, the proof is too long.
        if sn == 0:
            raise VerificationError("inclusion proof has too many hashes")
        # 4b: p is a left sibling when LSB(fn) is set or fn == sn.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:  # 4b.ii: skip the levels where this node has no sibling
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        # 4c: one level up.
        fn >>= 1
        sn >>= 1
    # Step 5: sn must be 0 and r must equal the root.
    if sn != 0:
        raise VerificationError("inclusion proof has too few hashes")
    if not hmac.compare_digest(r, root):
        raise VerificationError("inclusion proof does not lead to the root hash")


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree (new_size, new_root) extends (old_size, old_root).

    Follows RFC 9162 §2.1.4.2; raises VerificationError on any failure."""
    for item in proof:
        _check_hash(item, "proof hash")
    if old_size > new_size:
        raise VerificationError(f"tree size went back from {old_size} to {new_size}")
    if old_size == new_size:
        # Same tree: the proof is empty and the roots are equal.
        if proof:
            raise VerificationError("consistency proof between equal sizes must be empty")
        if not hmac.compare_digest(old_root, new_root):
            raise VerificationError(f"two different roots for tree size {old_size}")
        return
    if old_size == 0:
        # Every tree extends the empty tree.
        if proof:
            raise VerificationError("consistency proof from the empty tree must be empty")
        return
    _check_hash(old_root, "old root hash")
    _check_hash(new_root, "new root hash")
    # Step 1: the path must not be empty.
    if not proof:
        raise VerificationError("consistency proof is empty")
    path = list(proof)
    # Step 2: if first is an exact power of 2, prepend first_hash.
    if old_size & (old_size - 1) == 0:
        path.insert(0, old_root)
    # Step 3: fn = first - 1, sn = second - 1.
    fn, sn = old_size - 1, new_size - 1
    # Step 4: while LSB(fn) is set, right-shift fn and sn.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5: fr = sr = first value of the path.
    fr = sr = path[0]
    # Step 6: for each subsequent value c ...
    for c in path[1:]:
        # 6a: if sn is 0, the proof is too long.
        if sn == 0:
            raise VerificationError("consistency proof has too many hashes")
        # 6b
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        # 6c
        fn >>= 1
        sn >>= 1
    # Step 7: fr == first_hash, sr == second_hash, sn == 0.
    if sn != 0:
        raise VerificationError("consistency proof has too few hashes")
    if not hmac.compare_digest(fr, old_root):
        raise VerificationError("consistency proof does not lead to the old root")
    if not hmac.compare_digest(sr, new_root):
        raise VerificationError("consistency proof does not lead to the new root")


class CompactRange:
    """The right frontier of a tree: O(log n) hashes that give its root and take
    appends (the 'compact range' of transparency-dev/merkle). Pure, in memory."""

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Iterable[bytes] = ()) -> None:
        self._size = size
        self._hashes = list(hashes)
        if len(self._hashes) != size.bit_count():
            raise ValueError(f"a tree of size {size} has {size.bit_count()} frontier hashes")

    @property
    def size(self) -> int:
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Perfect-subtree roots, largest (leftmost) first."""
        return tuple(self._hashes)

    def copy(self) -> CompactRange:
        return CompactRange(self._size, self._hashes)

    def append(self, leaf: bytes) -> None:
        """Add one leaf hash (not leaf data)."""
        hashes = self._hashes
        hashes.append(leaf)
        size = self._size
        while size & 1:
            right = hashes.pop()
            hashes[-1] = node_hash(hashes[-1], right)
            size >>= 1
        self._size += 1

    def root(self) -> bytes:
        if not self._hashes:
            return EMPTY_ROOT
        root = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            root = node_hash(left, root)
        return root


def root_from_leaf_hashes(leaves: Iterable[bytes]) -> bytes:
    tree = CompactRange()
    for leaf in leaves:
        tree.append(leaf)
    return tree.root()


class MerkleTree:
    """Every perfect-subtree hash kept in memory, level by level: appends in amortised
    O(1), roots and proofs for any earlier size in O(log² n) hashes at worst."""

    __slots__ = ("_levels",)

    def __init__(self, leaves: Iterable[bytes] = ()) -> None:
        self._levels: list[list[bytes]] = [[]]
        for leaf in leaves:
            self.append(leaf)

    @property
    def size(self) -> int:
        return len(self._levels[0])

    def append(self, leaf: bytes) -> None:
        levels = self._levels
        levels[0].append(leaf)
        index, level = len(levels[0]) - 1, 0
        while index & 1:
            if level + 1 == len(levels):
                levels.append([])
            row = levels[level]
            levels[level + 1].append(node_hash(row[index - 1], row[index]))
            index >>= 1
            level += 1

    def node(self, level: int, index: int) -> bytes:
        return self._levels[level][index]

    def leaf(self, index: int) -> bytes:
        return self._levels[0][index]

    def root(self, size: int | None = None) -> bytes:
        return subtree_hash(0, self.size if size is None else size, self.node)

    def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        return inclusion_proof(index, self.size if size is None else size, self.node)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        return consistency_proof(old_size, self.size if new_size is None else new_size, self.node)
