"""The receipt the gateway hands with every answer (:mod:`appliance.audit.receipts`):
the request and completion records' leaves, signed by the log's key."""

from __future__ import annotations

from appliance.audit.log import Appended
from appliance.audit.receipts import Receipt, ReceiptLeaf, encode_receipt, receipt_text
from appliance.audit.writer import GroupCommitWriter
from appliance.gateway.services import GatewayServices

__all__ = ["issue_receipt"]


def issue_receipt(
    services: GatewayServices,
    request_id: str,
    request: Appended | None,
    completion: Appended | None,
) -> str | None:
    """The receipt header value; None when the sink is no Merkle log (tests)."""
    if request is None or completion is None or not isinstance(services.audit, GroupCommitWriter):
        return None
    log = services.audit.log
    receipt = Receipt(
        origin=log.origin,
        request_id=request_id,
        request=ReceiptLeaf(request.index, request.leaf_hash),
        completion=ReceiptLeaf(completion.index, completion.leaf_hash),
    )
    # One Ed25519 signature (tens of microseconds) per answer, on the event loop.
    return encode_receipt(log.sign_note(receipt_text(receipt)))
