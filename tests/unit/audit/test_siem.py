"""appliance/audit/siem.py: how much a record matters to a SOC, in each format's scale."""

from __future__ import annotations

from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.siem import Level, event_name, ip_of, level_of, present, record_fields
from tests.support.siem import CANARY, OPTIONS, sealed, served


def test_refusals_rank_above_served_requests() -> None:
    ok = level_of(AuditEvent.COMPLETION, Outcome.OK, "/v1/chat/completions")
    accepted = level_of(AuditEvent.REQUEST, Outcome.ACCEPTED, "/v1/chat/completions")
    invalid = level_of(AuditEvent.DENIED, Outcome.INVALID, "/v1/chat/completions")
    refused = level_of(AuditEvent.DENIED, Outcome.DENIED, "/v1/chat/completions")
    at_audit = level_of(AuditEvent.DENIED, Outcome.DENIED, "/audit/records")
    assert ok == accepted == Level.INFO < invalid < refused < at_audit
    assert level_of(AuditEvent.AUDIT_READ, Outcome.OK, "audit show") == Level.LOW
    levels = sorted(Level)
    assert [x.syslog_severity for x in levels] == sorted(
        (x.syslog_severity for x in levels), reverse=True
    )  # lower syslog number = more severe
    assert [x.cef_severity for x in levels] == sorted(x.cef_severity for x in levels)
    assert [x.ocsf_severity[0] for x in levels] == [1, 2, 3, 4]


def test_event_names_and_unknown_kinds() -> None:
    assert event_name(AuditEvent.COMPLETION, Outcome.OK) == "LLM answer served"
    assert event_name(AuditEvent.DENIED, Outcome.DENIED) == "Request denied"
    assert event_name("made.up", "odd") == "made.up odd"  # never an error


def test_fields_carry_the_place_in_the_log_and_no_content() -> None:
    entry, leaf = sealed(served())
    fields = dict(record_fields(entry, leaf, OPTIONS.origin))
    assert (fields["index"], fields["leafHash"], fields["origin"]) == (
        7, leaf.hex(), OPTIONS.origin,
    )  # fmt: skip
    assert fields["contentSha256"] == bytes(range(32)).hex()
    assert CANARY not in repr(fields) and "content" not in fields
    kept = present(*record_fields(entry, leaf, OPTIONS.origin))
    assert "denialReason" not in kept and None not in kept.values()


def test_addresses() -> None:
    assert str(ip_of("10.1.2.3")) == "10.1.2.3" and ip_of("2001:db8::7") is not None
    assert ip_of("testclient") is None and ip_of(None) is None
