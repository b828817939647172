"""The receipt the gateway hands with every answer (:mod:`appliance.audit.receipts`):
the request and completion records' leaves, signed by the log's key, and a salted
commitment to the answer's text."""

from __future__ import annotations

import base64
import secrets
from dataclasses import replace

from appliance.audit.log import Appended
from appliance.audit.receipts import (
    ANSWER_COMMITMENT_PARAM,
    SALT_BYTES,
    AnswerCommitment,
    Receipt,
    ReceiptLeaf,
    commit_answer,
    encode_receipt,
    receipt_text,
)
from appliance.audit.records import AuditRecord
from appliance.audit.sink import LogSink
from appliance.gateway.services import GatewayServices

__all__ = ["issue_receipt", "with_answer_commitment"]


def with_answer_commitment(record: AuditRecord) -> tuple[AuditRecord, AnswerCommitment | None]:
    """``record`` (a completion, already :func:`~appliance.audit.records.storable`) with
    the digest of its sealed answer texts in its clear params, and the commitment (salt
    and digest) for the receipt; unchanged and None when it seals no answer texts
    (embeddings). Computed from the record's own content, so the digest covers the texts
    exactly as sealed (after any normalisation), not as the engine sent them."""
    texts = record.content.get("response") if record.content is not None else None
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        return record, None
    # A fresh salt per answer: the same answer to two callers gives unlinkable digests.
    commitment = commit_answer(texts, secrets.token_bytes(SALT_BYTES))
    params = {
        **(record.params or {}),
        ANSWER_COMMITMENT_PARAM: base64.b64encode(commitment.digest).decode("ascii"),
    }
    return replace(record, params=params), commitment


def issue_receipt(
    services: GatewayServices,
    request_id: str,
    request: Appended | None,
    completion: Appended | None,
    answer: AnswerCommitment | None = None,
) -> str | None:
    """The receipt header value; None when the sink is no Merkle log (tests)."""
    if request is None or completion is None or not isinstance(services.audit, LogSink):
        return None
    log = services.audit.log
    receipt = Receipt(
        origin=log.origin,
        request_id=request_id,
        request=ReceiptLeaf(request.index, request.leaf_hash),
        completion=ReceiptLeaf(completion.index, completion.leaf_hash),
        answer=answer,
    )
    # One Ed25519 signature (tens of microseconds) per answer, on the event loop.
    return encode_receipt(log.sign_note(receipt_text(receipt)))
