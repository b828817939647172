"""appliance/audit/receipt_proofs.py ``receipt_pair``: which request and completion a
receipt proof is for, and who may have it (the caller's own; auditors all; another
caller's is 403, an unknown id 404). Request ids are chosen by callers, so one id may
name several requests, even several callers'."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from appliance.audit.receipt_proofs import receipt_pair
from appliance.audit.records import AuditEvent, AuditRecord, Outcome, SealedEntry
from appliance.errors import ModelNotFound, PermissionDenied


def _entry(index: int, event: AuditEvent, subject: str) -> SealedEntry:
    record = AuditRecord(
        record_id=f"r-{index}", recorded_at=datetime(2026, 1, 1, tzinfo=UTC), event=event,
        request_id="shared", http_method="POST", path="/v1/chat/completions",
        status_code=200, outcome=Outcome.OK, subject=subject,
    )  # fmt: skip
    return SealedEntry(index, record, None, None)


ASK, DONE = AuditEvent.REQUEST, AuditEvent.COMPLETION
# alice asks twice with one id, bob reuses it in between.
ENTRIES = [
    _entry(1, ASK, "alice"), _entry(2, ASK, "bob"), _entry(3, DONE, "alice"),
    _entry(4, DONE, "bob"), _entry(5, ASK, "alice"), _entry(6, DONE, "alice"),
]  # fmt: skip


def _indices(pair: tuple[SealedEntry, SealedEntry]) -> tuple[int, int]:
    return pair[0].index, pair[1].index


def test_the_callers_latest_answer_or_the_one_named() -> None:
    assert _indices(receipt_pair(ENTRIES, subject="alice")) == (5, 6)
    assert _indices(receipt_pair(ENTRIES, subject="alice", completion_index=3)) == (1, 3)
    assert _indices(receipt_pair(ENTRIES, subject="bob")) == (2, 4)  # never alice's request
    assert _indices(receipt_pair(ENTRIES, subject=None, completion_index=4)) == (2, 4)
    assert _indices(receipt_pair(ENTRIES, subject=None)) == (5, 6)  # an auditor


def test_another_callers_answer_is_forbidden_an_unknown_one_not_found() -> None:
    with pytest.raises(PermissionDenied) as refused:
        receipt_pair(ENTRIES, subject="bob", completion_index=6)
    assert refused.value.code == "receipt_forbidden" and refused.value.status_code == 403
    assert "alice" not in refused.value.message  # nothing about whose it is
    with pytest.raises(PermissionDenied):
        receipt_pair(ENTRIES, subject="mallory")
    for entries, index in (([], None), (ENTRIES, 5), (ENTRIES[:2], None), (ENTRIES[2:4], None)):
        with pytest.raises(ModelNotFound) as missing:
            receipt_pair(entries, subject="alice", completion_index=index)
        assert missing.value.code == "receipt_not_found"


def test_an_external_answer_pairs_with_its_egress_request() -> None:
    entries = [
        _entry(1, AuditEvent.EGRESS_REQUEST, "alice"),
        _entry(2, AuditEvent.DENIED, "alice"),
        _entry(3, DONE, "alice"),
    ]
    assert _indices(receipt_pair(entries, subject="alice")) == (1, 3)
