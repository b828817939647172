"""What a caller needs to check a receipt against the log: inclusion proofs of the two
leaves it names to the latest signed checkpoint, and, from a checkpoint the caller
already holds, a consistency proof to that one."""

from __future__ import annotations

from typing import Any

from appliance.audit.access import inclusion_proof_for
from appliance.audit.checkpoint import NoteVerifier
from appliance.audit.consistency import consistency_proof_for
from appliance.audit.records import AuditEvent
from appliance.audit.store import SqlAuditStore
from appliance.errors import InvalidRequest, ModelNotFound

__all__ = ["receipt_proof"]


def receipt_proof(
    store: SqlAuditStore,
    request_id: str,
    *,
    origin: str,
    verifier: NoteVerifier,
    subject: str | None,
    since: int | None = None,
) -> dict[str, Any]:
    """The proof document for the receipt of ``request_id``. ``subject``: the caller's,
    who may see only their own records (None: an auditor, who may see all); anything
    else reads as no such receipt (404), so ids of others' requests reveal nothing."""
    records = store.by_request(request_id)
    request = next((r for r in records if r.event is AuditEvent.REQUEST), None)
    completion = next((r for r in reversed(records) if r.event is AuditEvent.COMPLETION), None)
    if (
        request is None
        or completion is None
        or (subject is not None and {request.subject, completion.subject} != {subject})
    ):
        raise ModelNotFound(f"no receipt for request {request_id}", code="receipt_not_found")
    checkpoint = store.latest_checkpoint()
    proofs = {}
    for name, record in (("request", request), ("completion", completion)):
        try:
            proofs[name] = inclusion_proof_for(
                store, record.record_id, origin=origin, verifier=verifier, checkpoint=checkpoint
            )
        except InvalidRequest as exc:
            raise InvalidRequest(
                f"the answer to {request_id} is not covered by a signed checkpoint yet; "
                "retry after the log's checkpoint interval (audit.checkpoint_interval_s)",
                code="receipt_not_yet_covered",
            ) from exc
    assert checkpoint is not None  # the proofs above needed one
    consistency = None
    if since is not None:
        if not 0 < since <= checkpoint.tree_size:
            raise InvalidRequest(
                f"since must be a tree size from 1 to {checkpoint.tree_size}", param="since"
            )
        consistency = consistency_proof_for(
            store, since, checkpoint.tree_size, origin=origin, verifier=verifier
        )
    return {
        "request_id": request_id,
        "origin": origin,
        "checkpoint": checkpoint.note,
        "request": proofs["request"],
        "completion": proofs["completion"],
        "consistency": consistency,
    }
