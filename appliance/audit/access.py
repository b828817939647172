"""Acts on the audit log by auditors: reveal content, prove inclusion, shred a subject
(retention is appliance.audit.retention_store). Each act that touches content is
itself recorded, before it happens (if the record cannot be written, the act does not
happen)."""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from appliance.audit.checkpoint import NoteVerifier, verify_checkpoint
from appliance.audit.envelope import open_envelope
from appliance.audit.log import AuditLog
from appliance.audit.merkle import MerkleTree, leaf_hash, verify_inclusion
from appliance.audit.records import (
    AuditEvent,
    AuditRecord,
    Outcome,
    SealedEntry,
    format_time,
    leaf_bytes,
    metadata_bytes,
    metadata_of,
)
from appliance.audit.store import SearchFilter, SqlAuditStore, StoredCheckpoint
from appliance.errors import InvalidRequest, ModelNotFound

__all__ = [
    "Actor",
    "Revealed",
    "decrypt_entry",
    "describe",
    "inclusion_proof_for",
    "proof_document",
    "record_act",
    "require_reason",
    "reveal",
    "search_details",
    "shred_subject",
]


@dataclass(frozen=True)
class Actor:
    """Who acts: a person at the CLI, or a principal through the API."""

    subject: str
    username: str
    auth_method: str = "cli"
    client_addr: str | None = None
    team: str | None = None


@dataclass(frozen=True)
class Revealed:
    record: AuditRecord
    index: int
    # The decrypted content; None when the record has none, or it is gone.
    content: dict[str, Any] | None
    # "present", "none" (no content recorded), "shredded" (subject key destroyed),
    # "dropped" (removed by retention)
    status: str


def require_reason(reason: str) -> str:
    reason = reason.strip()
    if len(reason) < 3:
        raise InvalidRequest("a reason is required (what case or request this serves)")
    return reason[:500]


def record_act(
    log: AuditLog,
    actor: Actor,
    event: AuditEvent,
    details: dict[str, Any],
    *,
    path: str,
    method: str = "CLI",
) -> AuditRecord:
    record = AuditRecord(
        record_id=str(uuid.uuid4()),
        recorded_at=log.now(),
        event=event,
        request_id=f"act-{uuid.uuid4().hex[:16]}",
        http_method=method,
        path=path[:200],
        status_code=0,
        outcome=Outcome.OK,
        subject=actor.subject,
        username=actor.username,
        team=actor.team,
        auth_method=actor.auth_method,
        client_addr=actor.client_addr,
        params=details,
    )
    log.append(record)
    return record


def reveal(
    log: AuditLog, record_id: str, *, actor: Actor, reason: str, via: str = "audit show"
) -> Revealed:
    """Decrypt one record's content. The viewer and the reason are recorded first."""
    reason = require_reason(reason)
    stored = log.store.entry(record_id)
    if stored is None:
        raise ModelNotFound(f"no audit record {record_id}", code="record_not_found")
    record_act(
        log, actor, AuditEvent.AUDIT_READ, {"record_id": record_id, "reason": reason}, path=via
    )
    content, status = decrypt_entry(log, stored.entry, log.store.envelope(stored.entry.index))
    return Revealed(stored.entry.record, stored.entry.index, content, status)


def decrypt_entry(
    log: AuditLog, entry: SealedEntry, envelope: bytes | None
) -> tuple[dict[str, Any] | None, str]:
    """(content, status) of one entry; the caller has recorded why it looks."""
    if entry.content_sha256 is None or entry.content_key_id is None:
        return None, "none"
    if envelope is None:
        return None, "dropped"
    key = log.keyring.key(entry.content_key_id)
    if key is None:
        return None, "shredded"
    plaintext = open_envelope(
        envelope, associated_data=metadata_bytes(entry.record), subject_key=key
    )
    content: dict[str, Any] = json.loads(plaintext)
    return content, "present"


def search_details(where: SearchFilter) -> dict[str, Any]:
    """A search's filters as record params (for the audit.search record)."""
    details: dict[str, Any] = {}
    for name, value in vars(where).items():
        if value is None or value is False:
            continue
        details[name] = format_time(value) if isinstance(value, datetime) else value
    return details


def shred_subject(log: AuditLog, subject: str, *, actor: Actor, reason: str) -> int:
    """Crypto-shred: destroy the subject's keys; leaves and proofs stay valid."""
    reason = require_reason(reason)
    record_act(
        log, actor, AuditEvent.AUDIT_SHRED, {"target_subject": subject, "reason": reason},
        path="audit shred",
    )  # fmt: skip
    return log.keyring.shred(subject, log.now())


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def inclusion_proof_for(
    store: SqlAuditStore,
    record_id: str,
    *,
    origin: str,
    verifier: NoteVerifier,
    checkpoint: StoredCheckpoint | None = None,
) -> dict[str, Any]:
    """An inclusion proof (RFC 6962 §2.1.1) of one record against a signed checkpoint
    (default: the latest), checked before it is returned."""
    stored = store.entry(record_id)
    if stored is None:
        raise ModelNotFound(f"no audit record {record_id}", code="record_not_found")
    checkpoint = checkpoint or store.latest_checkpoint()
    index = stored.entry.index
    if checkpoint is None or checkpoint.tree_size <= index:
        raise InvalidRequest(
            f"record {index} is not covered by a signed checkpoint yet; "
            "run `appliance audit checkpoint` and retry"
        )
    signed = verify_checkpoint(checkpoint.note, verifier, origin=origin)
    tree = MerkleTree(leaf for i, leaf in store.iter_leaf_hashes() if i < signed.size)
    proof = tree.inclusion_proof(index, signed.size)
    leaf = leaf_bytes(stored.entry)
    verify_inclusion(leaf_hash(leaf), index, signed.size, proof.hashes, signed.root_hash)
    return proof_document(stored.entry.record.record_id, index, leaf, proof.hashes, checkpoint)


def proof_document(
    record_id: str, index: int, leaf: bytes, hashes: tuple[bytes, ...], cp: StoredCheckpoint
) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "leaf_index": index,
        "leaf": leaf.decode("utf-8"),
        "leaf_hash": _b64(leaf_hash(leaf)),
        "tree_size": cp.tree_size,
        "root_hash": _b64(cp.root_hash),
        "inclusion_proof": [_b64(h) for h in hashes],
        "checkpoint": cp.note,
    }


def describe(record: AuditRecord) -> dict[str, Any]:
    return metadata_of(record)
