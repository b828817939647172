"""appliance/audit/records.py: canonical leaf bytes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.audit.records import (
    MAX_NAMES,
    NAME_WIDTH,
    AuditEvent,
    SealedEntry,
    format_time,
    leaf_bytes,
    metadata_bytes,
    storable_names,
)
from tests.support.audit import T0, make_record


def test_leaf_is_canonical_json_naming_index_metadata_and_ciphertext_hash() -> None:
    record = make_record("r", params={"b": 1, "a": 0.5}, content={"secret": "never in leaf"})
    leaf = leaf_bytes(SealedEntry(7, record, b"\x01" * 32, "key1"))
    parsed = json.loads(leaf)
    assert parsed["index"] == 7 and parsed["v"] == 1
    assert parsed["content"] == {"key": "key1", "sha256": "01" * 32}
    assert parsed["meta"]["recorded_at"] == "2025-03-01T12:00:00.123456Z"
    assert b"never in leaf" not in leaf
    assert b" " not in leaf.replace(b"/v1/chat/completions", b"")  # no whitespace
    assert leaf == json.dumps(parsed, sort_keys=True, separators=(",", ":")).encode()


def test_time_is_utc_with_microseconds_whatever_the_zone() -> None:
    local = datetime(2025, 3, 1, 14, 0, 0, 5, tzinfo=timezone(timedelta(hours=2)))
    assert format_time(local) == "2025-03-01T12:00:00.000005Z"
    assert format_time(datetime(2025, 3, 1, tzinfo=UTC)) == "2025-03-01T00:00:00.000000Z"


def test_non_finite_parameters_are_encoded_as_text() -> None:
    record = make_record("r", params={"temperature": float("nan"), "top_p": float("inf")})
    assert json.loads(metadata_bytes(record))["params"] == {"temperature": "nan", "top_p": "inf"}


@settings(max_examples=60, deadline=None)
@given(
    index=st.integers(0, 2**40),
    seconds=st.integers(0, 10**8),
    username=st.text(max_size=30),
    tokens=st.none() | st.integers(0, 10**6),
)
def test_leaf_bytes_are_deterministic_and_distinct(
    index: int, seconds: int, username: str, tokens: int | None
) -> None:
    record = make_record(
        "r", at=T0 + timedelta(seconds=seconds), username=username, prompt_tokens=tokens,
        event=AuditEvent.COMPLETION,
    )  # fmt: skip
    entry = SealedEntry(index, record, None, None)
    assert leaf_bytes(entry) == leaf_bytes(SealedEntry(index, record, None, None))
    assert leaf_bytes(entry) != leaf_bytes(SealedEntry(index + 1, record, None, None))
    assert json.loads(leaf_bytes(entry))["meta"]["username"] == username


def test_name_lists_are_cut_normalised_and_bounded() -> None:
    names = ["a" * 100, "", None, 7, "nul\x00name", "lone\ud800", *(f"t{i}" for i in range(50))]
    kept = storable_names(names)
    assert kept[:3] == ["a" * NAME_WIDTH, "nulname", "lone\ufffd"]
    assert len(kept) == MAX_NAMES
    assert storable_names([]) == []
