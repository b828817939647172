"""appliance/audit/siem_syslog.py: a sealed entry as one RFC 5424 message carrying syslog
structured data, a CEF line or an OCSF event; never the content."""

from __future__ import annotations

import json

import pytest

from appliance.audit.siem_rfc5424 import (
    FACILITIES,
)
from appliance.audit.siem_syslog import render
from tests.support.audit import make_record
from tests.support.siem import (
    CANARY,
    OPTIONS,
    denied,
    parse_cef_extension,
    parse_sd,
    sealed,
    served,
    split_syslog,
)


def test_syslog_rendering_carries_index_leaf_and_metadata() -> None:
    entry, leaf = sealed(served())
    header, sd, msg = split_syslog(render("syslog", entry, leaf, OPTIONS))
    pri = FACILITIES["authpriv"] * 8 + 6
    assert header == [f"<{pri}>1", "2025-03-01T12:00:03.123456Z", "gw1.example", "appliance",
                      "-", "inference.completion"]  # fmt: skip
    fields = parse_sd(sd)
    assert sd.startswith("[appliance@32473 ")
    assert fields["index"] == "7" and fields["leafHash"] == leaf.hex()
    assert fields["recordId"] == entry.record.record_id and fields["origin"] == OPTIONS.origin
    assert fields["promptTokens"] == "12" and fields["completionTokens"] == "30"
    assert fields["contentSha256"] == bytes(range(32)).hex() and fields["contentKeyId"] == "sk-1"
    assert json.loads(fields["params"]) == {"temperature": 0.2, "max_tokens": 16}
    assert "denialReason" not in fields  # absent, not "None"
    assert msg == "LLM answer served (log index 7)"


def test_denied_rendering_escapes_and_ranks_higher() -> None:
    entry, leaf = sealed(denied(), content=False)
    header, sd, _ = split_syslog(render("syslog", entry, leaf, OPTIONS))
    assert header[0] == f"<{FACILITIES['authpriv'] * 8 + 4}>1"  # warning
    assert parse_sd(sd)["denialReason"] == entry.record.denial_reason
    _, _, cef = split_syslog(render("cef", entry, leaf, OPTIONS))
    assert cef.startswith(
        "CEF:0|sovereign-appliance|appliance|0.1.0|request.denied|Request denied|5|"
    )
    assert 'reason=model_not_allowed: "x"|y\\=z\\\\w]' in cef
    assert "c6a2=2001:db8::7 c6a2Label=Source IPv6 Address" in cef
    audit_entry, audit_leaf = sealed(denied("/audit/records"), content=False)
    _, _, cef = split_syslog(render("cef", audit_entry, audit_leaf, OPTIONS))
    assert "|Request denied|7|" in cef


def test_cef_rendering_maps_fields() -> None:
    entry, leaf = sealed(served())
    _, sd, line = split_syslog(render("cef", entry, leaf, OPTIONS))
    assert sd == "-"
    assert line.startswith(
        "CEF:0|sovereign-appliance|appliance|0.1.0|inference.completion|LLM answer served|2|"
    )
    ext = parse_cef_extension(line)
    assert ext["rt"] == str(int(entry.record.recorded_at.timestamp() * 1000))
    assert ext["cn1"] == "7" and ext["cn1Label"] == "logIndex"
    assert ext["cs5"] == leaf.hex() and ext["cs5Label"] == "leafHash"
    assert ext["src"] == "10.1.2.3" and ext["suser"] == "alice" and ext["suid"] == "apikey:alice"
    assert ext["cs1"] == "smollm2-135m-instruct" and ext["cs2"] == "risk"
    assert ext["externalId"] == entry.record.record_id and ext["deviceExternalId"] == OPTIONS.origin
    assert ext["applianceStatusCode"] == "200" and ext["applianceLatencyMs"] == "840"
    assert "reason" not in ext and "shost" not in ext


def test_labels_only_with_their_values() -> None:
    record = make_record("r", client_addr="testclient")  # no model, team, tokens, key
    entry, leaf = sealed(record, content=False)
    ext = parse_cef_extension(split_syslog(render("cef", entry, leaf, OPTIONS))[2])
    assert ext["shost"] == "testclient"
    for key in ("cs1", "cs2", "cs3", "cs4", "cn2", "cn3"):
        assert key not in ext and f"{key}Label" not in ext
    assert ext["cs5Label"] == "leafHash" and ext["cn1Label"] == "logIndex"


@pytest.mark.parametrize("fmt", ["syslog", "cef", "ocsf"])
def test_content_never_leaves(fmt: str) -> None:
    for record in (served(), denied(content={"messages": [{"content": CANARY}]})):
        entry, leaf = sealed(record)
        assert CANARY.encode() not in render(fmt, entry, leaf, OPTIONS)
        assert b"canary" not in render(fmt, entry, leaf, OPTIONS)


def test_unknown_format_is_refused() -> None:
    entry, leaf = sealed(served())
    with pytest.raises(ValueError, match="syslog, cef or ocsf"):
        render("leef", entry, leaf, OPTIONS)
