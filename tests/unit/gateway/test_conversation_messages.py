"""A saved chat message may carry its answer's receipt and request id (the chat's
Receipt button after a reload); both are checked to be what the gateway issues."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from appliance.audit.receipts import encode_receipt
from appliance.gateway.routes.conversations import Message

RECEIPT = encode_receipt("appliance.receipt/v1\nappliance.local/audit\nrequest-id 3f2c1e0d9a8b\n")


def test_an_answer_keeps_its_receipt_and_request_id() -> None:
    saved = Message(role="assistant", content="Paris.", request_id="3f2c1e0d9a8b", receipt=RECEIPT)
    assert saved.model_dump(exclude_none=True) == {
        "role": "assistant",
        "content": "Paris.",
        "request_id": "3f2c1e0d9a8b",
        "receipt": RECEIPT,
    }
    assert "receipt" not in Message(role="user", content="hi").model_dump(exclude_none=True)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("receipt", RECEIPT + "=="),  # padded: not the wire form
        ("receipt", "<script>"),
        ("receipt", "A" * 8_001),
        ("request_id", "has space"),
        ("request_id", "short"),
        ("received_at", 1),  # page-only state is not stored
    ],
)
def test_anything_else_is_refused(field: str, value: object) -> None:
    with pytest.raises(ValidationError):
        Message.model_validate({"role": "assistant", "content": "x", field: value})
