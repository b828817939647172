"""``audit prove --consistency`` and ``GET /audit/consistency``: prove to a monitor or
witness that the log only grew.

Reads only. :func:`consistency_proof_for` returns an RFC 6962 consistency proof between
two tree sizes, checked before it is returned, with the signed checkpoints at both.
"""

from __future__ import annotations

import base64
import hmac
from typing import Any

from sqlalchemy import select

from appliance.audit.checkpoint import NoteVerifier, verify_checkpoint
from appliance.audit.merkle import MerkleTree, verify_consistency
from appliance.audit.store import SqlAuditStore
from appliance.db.tables import audit_checkpoints
from appliance.errors import InvalidRequest, ModelNotFound, VerificationError

__all__ = ["consistency_proof_for"]


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def _signed_note_at(store: SqlAuditStore, size: int) -> str | None:
    """The signed checkpoint for exactly ``size`` records, if one was signed."""
    with store.engine.connect() as connection:
        note = connection.execute(
            select(audit_checkpoints.c.note).where(audit_checkpoints.c.tree_size == size)
        ).scalar()
    return str(note) if note is not None else None


def _check_sizes(old_size: int, new_size: int, log_size: int) -> None:
    if old_size < 0:
        raise InvalidRequest(f"from: a tree size cannot be negative ({old_size})", param="from")
    if new_size < 0:
        raise InvalidRequest(f"to: a tree size cannot be negative ({new_size})", param="to")
    if new_size > log_size:
        raise InvalidRequest(
            f"to: the log holds {log_size} records, so there is no tree of size {new_size}",
            param="to",
        )
    if old_size > new_size:
        raise InvalidRequest(
            f"from ({old_size}) is larger than to ({new_size}): a proof runs from the "
            "older, smaller tree to the newer one",
            param="from",
        )


def _tree_of(store: SqlAuditStore, size: int) -> MerkleTree:
    """The tree of the first ``size`` stored leaf hashes (dense indices required)."""
    tree = MerkleTree()
    if size == 0:
        return tree
    for index, leaf in store.iter_leaf_hashes():
        if index != tree.size:
            raise VerificationError(
                f"audit log has a gap at index {tree.size}; run `appliance audit verify`"
            )
        tree.append(leaf)
        if tree.size == size:
            return tree
    raise VerificationError(
        f"audit log ends at {tree.size} records, not {size}; run `appliance audit verify`"
    )


def consistency_proof_for(
    store: SqlAuditStore,
    old_size: int,
    new_size: int | None = None,
    *,
    origin: str,
    verifier: NoteVerifier,
) -> dict[str, Any]:
    """A consistency proof (RFC 6962 §2.1.2) that the tree of ``new_size`` records
    extends the tree of ``old_size``, checked before it is returned, with the signed
    checkpoints at both sizes where they exist (a monitor verifies offline against
    them; a size that no checkpoint covers gets ``null``).

    ``new_size`` defaults to the latest signed checkpoint's size (ModelNotFound
    ``no_checkpoint`` if none is signed yet).

    Steps:
    1. 0 <= old_size <= new_size <= the number of stored records, else InvalidRequest
       naming the parameter (``from`` or ``to``);
    2. the roots at both sizes are recomputed from the stored leaf hashes (RFC 6962
       §2.1), with dense indices;
    3. a signed checkpoint at either size carries the log's signature for this origin
       (C2SP signed-note, tlog-checkpoint) and its root equals the recomputed one
       (else the stored log no longer matches what was signed: VerificationError);
    4. the proof, PROOF(m, D[n]) of RFC 6962 §2.1.2, verifies between the two roots
       (RFC 9162 §2.1.4.2).
    """
    if new_size is None:
        latest = store.latest_checkpoint()
        if latest is None:
            raise ModelNotFound("no checkpoint has been signed yet", code="no_checkpoint")
        new_size = latest.tree_size
    # 1.
    _check_sizes(old_size, new_size, store.size())
    # 2.
    tree = _tree_of(store, new_size)
    roots = {old_size: tree.root(old_size), new_size: tree.root(new_size)}
    # 3.
    notes: dict[int, str | None] = {}
    for size in sorted(roots):
        note = _signed_note_at(store, size) if size > 0 else None
        if note is not None:
            signed = verify_checkpoint(note, verifier, origin=origin)
            if signed.size != size or not hmac.compare_digest(signed.root_hash, roots[size]):
                raise VerificationError(
                    f"the stored records no longer match the checkpoint signed at size "
                    f"{size}; run `appliance audit verify`"
                )
        notes[size] = note
    # 4.
    proof = tree.consistency_proof(old_size, new_size)
    verify_consistency(old_size, new_size, roots[old_size], roots[new_size], proof.hashes)
    return {
        "origin": origin,
        "old_size": old_size,
        "new_size": new_size,
        "old_root_hash": _b64(roots[old_size]),
        "new_root_hash": _b64(roots[new_size]),
        "consistency_proof": [_b64(h) for h in proof.hashes],
        "old_checkpoint": notes[old_size],
        "new_checkpoint": notes[new_size],
    }
