"""What a caller needs to check a receipt against the log: inclusion proofs of the two
leaves it names to the latest signed checkpoint, and, from a checkpoint the caller
already holds, a consistency proof to that one.

Who may have it: the caller whose request it was, and auditors. Anyone else asking for
a request that exists is refused (403 ``receipt_forbidden``, and the gateway's error
handler writes the refusal to the log); an id with no answered request is 404
``receipt_not_found``."""

from __future__ import annotations

from typing import Any

from appliance.audit.access import inclusion_proof_for
from appliance.audit.checkpoint import NoteVerifier
from appliance.audit.consistency import consistency_proof_for
from appliance.audit.records import AuditEvent, SealedEntry
from appliance.audit.store import SearchFilter, SqlAuditStore
from appliance.errors import InvalidRequest, ModelNotFound, PermissionDenied

__all__ = ["receipt_pair", "receipt_proof"]

# The record an answer answers: in-house, or sent to an external provider (issue #17).
_REQUEST_EVENTS = (AuditEvent.REQUEST, AuditEvent.EGRESS_REQUEST)

# Callers choose their own request ids (X-Request-Id), so one id may name several
# requests; the proof looks at this many records with it.
_MAX_RECORDS = 1000


def receipt_pair(
    entries: list[SealedEntry], *, subject: str | None, completion_index: int | None = None
) -> tuple[SealedEntry, SealedEntry]:
    """The request and completion entries a receipt names, from the records of one
    request id in log order: the caller's own (``subject``; None: an auditor, all),
    the completion at ``completion_index`` (default: the latest), and the request
    before it by the same subject. Pure.

    ModelNotFound when there is no such answered request; PermissionDenied when there
    is, but only someone else's."""
    pairs = []
    for position, done in enumerate(entries):
        if done.record.event is not AuditEvent.COMPLETION:
            continue
        if completion_index is not None and done.index != completion_index:
            continue
        asked = next(
            (
                e
                for e in reversed(entries[:position])
                if e.record.event in _REQUEST_EVENTS and e.record.subject == done.record.subject
            ),
            None,
        )
        if asked is not None:
            pairs.append((asked, done))
    if not pairs:
        raise ModelNotFound("no receipt for this request id", code="receipt_not_found")
    own = [pair for pair in pairs if subject is None or pair[1].record.subject == subject]
    if not own:
        # Never whose it is: the refusal says only that it is not the caller's.
        raise PermissionDenied(
            "this request was made by another caller; only its caller or an auditor "
            "(role appliance-auditor) may have its proof",
            code="receipt_forbidden",
        )
    return own[-1]


def receipt_proof(
    store: SqlAuditStore,
    request_id: str,
    *,
    origin: str,
    verifier: NoteVerifier,
    subject: str | None,
    since: int | None = None,
    completion_index: int | None = None,
) -> dict[str, Any]:
    """The proof document for the receipt of ``request_id`` (see :func:`receipt_pair`
    for ``subject`` and ``completion_index``)."""
    found = store.search(SearchFilter(request_id=request_id, limit=_MAX_RECORDS))
    request, completion = receipt_pair(
        [stored.entry for stored in found], subject=subject, completion_index=completion_index
    )
    checkpoint = store.latest_checkpoint()
    proofs = {}
    for name, entry in (("request", request), ("completion", completion)):
        try:
            proofs[name] = inclusion_proof_for(
                store,
                entry.record.record_id,
                origin=origin,
                verifier=verifier,
                checkpoint=checkpoint,
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
