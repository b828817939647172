"""appliance/gateway/receipting.py: the answer commitment goes into the completion
record's clear params (so into its leaf) and, with its salt, into the receipt; never an
unsalted hash of the answer."""

from __future__ import annotations

import base64
import hashlib
from datetime import UTC, datetime
from typing import Any

from appliance.audit.receipts import answer_digest, answer_message
from appliance.audit.records import AuditEvent, AuditRecord, Outcome, metadata_bytes, storable
from appliance.gateway.receipting import with_answer_commitment


def _completion(
    content: dict[str, Any] | None, params: dict[str, Any] | None = None
) -> AuditRecord:
    record = AuditRecord(
        record_id="r-1", recorded_at=datetime(2026, 1, 1, tzinfo=UTC),
        event=AuditEvent.COMPLETION, request_id="req-1", http_method="POST",
        path="/v1/chat/completions", status_code=200, outcome=Outcome.OK,
        subject="apikey:1", params=params, content=content,
    )  # fmt: skip
    return storable(record)


def test_the_digest_of_the_sealed_texts_joins_the_params() -> None:
    record = _completion({"response": ["Tokyo"], "tool_calls": []}, {"tool_calls": ["f"]})
    committed, commitment = with_answer_commitment(record)
    assert commitment is not None and len(commitment.salt) == 32
    assert commitment.digest == answer_digest(commitment.salt, ["Tokyo"])
    assert committed.params == {
        "tool_calls": ["f"],
        "answer_commitment": base64.b64encode(commitment.digest).decode(),
    }
    assert committed.content == record.content  # the sealed answer is unchanged
    # What reaches the leaf: the salted digest, never a guessable unsalted hash.
    leaf = metadata_bytes(committed)
    for unsalted in (hashlib.sha256(b"Tokyo"), hashlib.sha256(answer_message(["Tokyo"]))):
        assert base64.b64encode(unsalted.digest()) not in leaf
        assert unsalted.hexdigest().encode() not in leaf


def test_each_answer_gets_its_own_salt() -> None:
    record = _completion({"response": ["Tokyo"]})
    first, second = with_answer_commitment(record)[1], with_answer_commitment(record)[1]
    assert first is not None and second is not None
    assert first.salt != second.salt and first.digest != second.digest


def test_the_commitment_covers_the_text_as_sealed_not_as_sent() -> None:
    # A lone surrogate cannot be stored; the record seals U+FFFD, and the caller's
    # receipt must match what a later reveal shows.
    record = _completion({"response": ["Par\ud800is"]})
    assert record.content == {"response": ["Par\ufffdis"]}
    _committed, commitment = with_answer_commitment(record)
    assert commitment is not None
    assert commitment.digest == answer_digest(commitment.salt, ["Par\ufffdis"])


def test_no_answer_texts_no_commitment() -> None:
    for content in (None, {"embeddings": 2, "dimensions": 8}, {"response": [1]}):
        record = _completion(content)
        assert with_answer_commitment(record) == (record, None)


def test_the_commitment_covers_the_answer_texts_not_the_reasoning() -> None:
    record = _completion({"response": ["Tokyo"], "reasoning": ["Japan's capital..."]})
    committed, commitment = with_answer_commitment(record)
    assert commitment is not None
    assert commitment.digest == answer_digest(commitment.salt, ["Tokyo"])
    assert committed.content == record.content  # the reasoning stays sealed beside it
