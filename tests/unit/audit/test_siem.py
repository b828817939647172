"""appliance/audit/siem.py: RFC 5424 and CEF against their published examples
(tests/vectors/siem/), escaping edge cases with round trips, and OCSF events checked
against the OCSF 1.8.0 schema for API Activity (tests/vectors/siem/generate_ocsf.py)."""

from __future__ import annotations

import ipaddress
import json
import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appliance.audit.merkle import leaf_hash
from appliance.audit.records import AuditEvent, Outcome, SealedEntry, leaf_bytes
from appliance.audit.siem import (
    FACILITIES,
    OCSF_VERSION,
    Level,
    SiemOptions,
    cef_message,
    escape_cef_extension,
    escape_cef_header,
    escape_sd_value,
    level_of,
    ocsf_event,
    octet_counted,
    render,
    sd_element,
    syslog_message,
    syslog_timestamp,
)
from tests.support.audit import T0, content_record, make_record

VECTORS = Path(__file__).parents[2] / "vectors" / "siem"
RFC5424 = json.loads((VECTORS / "rfc5424-examples.json").read_text())
CEF = json.loads((VECTORS / "cef-examples.json").read_text())
OCSF = json.loads((VECTORS / "ocsf-1.8.0-api-activity.json").read_text())
OPTIONS = SiemOptions(origin="test.example/audit", hostname="gw1.example", product_version="0.1.0")
CANARY = "canary-7f3a: what is the secret plan?"


def sealed(record: Any, index: int = 7, *, content: bool = True) -> tuple[SealedEntry, bytes]:
    entry = SealedEntry(
        index=index,
        record=record,
        content_sha256=bytes(range(32)) if content else None,
        content_key_id="sk-1" if content else None,
    )
    return entry, leaf_hash(leaf_bytes(entry))


def served(**fields: Any) -> Any:
    values: dict[str, Any] = {
        "event": AuditEvent.COMPLETION, "outcome": Outcome.OK, "client_addr": "10.1.2.3",
        "prompt_tokens": 12, "completion_tokens": 30, "latency_ms": 840, "team": "risk",
        "key_id": "k-9", "auth_method": "api_key",
        "content": {"messages": [{"role": "user", "content": CANARY}]},
    }  # fmt: skip
    return content_record(3, **{**values, **fields})


def denied(path: str = "/v1/chat/completions", **fields: Any) -> Any:
    return make_record(
        "req-d", event=AuditEvent.DENIED, outcome=Outcome.DENIED, status_code=403, path=path,
        subject="apikey:mallory", username="mallory", client_addr="2001:db8::7",
        model="smollm2-135m-instruct", denial_reason='model_not_allowed: "x"|y=z\\w]',
        **fields,
    )  # fmt: skip


# -- RFC 5424 -------------------------------------------------------------------------


@pytest.mark.parametrize("vector", RFC5424["messages"], ids=lambda v: v["name"])
def test_rfc5424_examples(vector: dict[str, Any]) -> None:
    message = syslog_message(
        facility=vector["facility"],
        severity=vector["severity"],
        timestamp=datetime.fromisoformat(vector["timestamp"]),
        hostname=vector["hostname"],
        app_name=vector["app_name"],
        procid=vector["procid"],
        msgid=vector["msgid"],
        structured_data=[
            sd_element(sd["id"], [tuple(p) for p in sd["params"]])
            for sd in vector["structured_data"]
        ],
        msg=vector["msg"],
        bom=vector["bom"],
    )
    assert message == vector["expected"].encode("utf-8")


@pytest.mark.parametrize("text", RFC5424["timestamps"])
def test_rfc5424_timestamps(text: str) -> None:
    assert syslog_timestamp(datetime.fromisoformat(text)) == text


def test_timestamp_edges() -> None:
    assert syslog_timestamp(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2025-01-02T03:04:05Z"
    east = timezone(timedelta(hours=5, minutes=30))
    assert syslog_timestamp(datetime(2025, 1, 2, 3, 4, 5, 100, east)).endswith(".0001+05:30")
    with pytest.raises(ValueError):
        syslog_timestamp(datetime(2025, 1, 2))  # naive


def test_pri_nilvalue_and_header_fields() -> None:
    message = syslog_message(
        facility=FACILITIES["local7"], severity=7, timestamp=None, hostname="",
        app_name="a" * 60, procid=None, msgid="bad id\twith\u00e9", msg=None,
    )  # fmt: skip
    assert message == b"<191>1 - - " + b"a" * 48 + b" - bad_id_with_ -"
    assert syslog_message(
        facility=0, severity=0, timestamp=None, hostname=None, app_name=None, procid=None,
        msgid=None,
    ).startswith(b"<0>1 - - - - - -")  # fmt: skip
    for facility, severity in ((24, 0), (0, 8), (-1, 0)):
        with pytest.raises(ValueError):
            syslog_message(
                facility=facility, severity=severity, timestamp=None, hostname=None,
                app_name=None, procid=None, msgid=None,
            )  # fmt: skip


def test_sd_param_escaping() -> None:
    assert escape_sd_value('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert escape_sd_value("\\]") == "\\\\\\]"  # the backslash first, then the bracket
    assert (
        sd_element("x@1", [("k", "[a=b]"), ("u", "\u00fcber")]) == '[x@1 k="[a=b\\]" u="\u00fcber"]'
    )
    assert sd_element("x@1", []) == "[x@1]"


@pytest.mark.parametrize("name", ["", "a b", "a=b", "a]b", 'a"b', "x" * 33, "\u00fc", "a\nb"])
def test_sd_names_are_checked(name: str) -> None:
    with pytest.raises(ValueError):
        sd_element(name, [])
    with pytest.raises(ValueError):
        sd_element("x@1", [(name, "v")])


def unescape_sd(value: str) -> str:
    """RFC 5424 §6.3.3 as a receiver reads it: ``\\`` before ``"``, ``\\`` or ``]`` is
    dropped; any other backslash is kept."""
    return re.sub(r'\\([\\"\]])', r"\1", value)


def parse_sd(element: str) -> dict[str, str]:
    assert element.startswith("[") and element.endswith("]")
    pairs = re.findall(r' ([^= \]"]+)="((?:[^"\\]|\\.)*)"', element[1:-1])
    return {k: unescape_sd(v) for k, v in pairs}


@given(st.text())
def test_sd_value_round_trip(value: str) -> None:
    assert parse_sd(sd_element("x@1", [("v", value)])) == {"v": value}


def test_octet_counting_counts_octets() -> None:
    assert octet_counted(b"<13>1 - - - - - -") == b"17 <13>1 - - - - - -"
    assert octet_counted("h\u00e9".encode()) == b"3 h\xc3\xa9"


# -- CEF ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", CEF["messages"], ids=lambda v: v["name"])
def test_cef_examples(vector: dict[str, Any]) -> None:
    extension = [tuple(pair) for pair in vector["extension"]]
    assert cef_message(*vector["header"], extension) == vector["expected"]


def test_cef_escaping_edges() -> None:
    assert escape_cef_header("a|b\\c=d\r\ne\nf") == "a\\|b\\\\c=d e f"
    assert escape_cef_extension("a=b\\c|d\r\ne\nf\rg") == "a\\=b\\\\c|d\\ne\\nf\\rg"
    assert escape_cef_extension("\\=") == "\\\\\\="


def unescape_cef_extension(value: str) -> str:
    table = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}
    return re.sub(r"\\([\\=nr])", lambda m: table[m.group(1)], value)


@given(st.text(alphabet=st.characters(exclude_characters="\r")))
def test_cef_extension_round_trip(value: str) -> None:
    # A bare CR and CRLF both travel as escapes; a receiver reads \n and \r back.
    assert unescape_cef_extension(escape_cef_extension(value)) == value


@given(st.text())
def test_cef_header_never_splits(value: str) -> None:
    line = cef_message("v", "p", "1", "id", value, 3)
    unescaped_pipes = re.findall(r"(?<!\\)(?:\\\\)*\|", line)
    assert len(unescaped_pipes) == 7 and "\n" not in line and "\r" not in line


# -- severity -------------------------------------------------------------------------


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


# -- rendering a sealed entry ----------------------------------------------------------


def split_syslog(message: bytes) -> tuple[list[str], str, str]:
    """(header fields, STRUCTURED-DATA, MSG) of a message this module wrote."""
    text = message.decode("utf-8")
    head = text.split(" ", 6)
    rest = head[6]
    if rest.startswith("-"):
        return head[:6], "-", rest[2:]
    end = re.search(r"[^\\]\](?= |$)", rest)
    assert end is not None
    return head[:6], rest[: end.end()], rest[end.end() + 1 :]


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


def parse_cef_extension(line: str) -> dict[str, str]:
    extension = line.split("|", 7)[7] if "\\|" not in line else re.split(r"(?<!\\)\|", line)[7]
    keys = list(re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", extension))
    values = {}
    for i, match in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(extension)
        values[match.group(1)] = unescape_cef_extension(extension[match.end() : end])
    return values


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


# -- OCSF -----------------------------------------------------------------------------

KINDS = {
    "string_t": str, "integer_t": int, "long_t": int, "boolean_t": bool,
    "float_t": (int, float), "object": dict,
}  # fmt: skip


def ocsf_problems(value: dict[str, Any], spec: dict[str, Any], where: str) -> list[str]:
    """What OCSF 1.8.0 (as resolved in the vector file) finds wrong with ``value``."""
    problems = []
    attributes = spec["attributes"]
    profiles = set(value.get("metadata", {}).get("profiles", []))
    for name, attribute in attributes.items():
        needed = attribute["requirement"] == "required"
        if needed and attribute.get("profile", None) in (None, *profiles) and name not in value:
            problems.append(f"{where}.{name}: required")
    for group in spec["constraints"].values():
        if not any(name in value for name in group):
            problems.append(f"{where}: needs one of {group}")
    for name, item in value.items():
        attribute = attributes.get(name)
        if attribute is None:
            problems.append(f"{where}.{name}: not an attribute of this class or object")
            continue
        items = item if attribute["is_array"] else [item]
        if attribute["is_array"] and not isinstance(item, list):
            problems.append(f"{where}.{name}: must be an array")
        for one in items:
            if "object" in attribute:
                problems += ocsf_problems(
                    one, OCSF["objects"][attribute["object"]], f"{where}.{name}"
                )
            elif not isinstance(one, KINDS[attribute["kind"]]) or isinstance(one, bool) != (
                attribute["kind"] == "boolean_t"
            ):
                problems.append(f"{where}.{name}: not {attribute['kind']}")
            elif "enum" in attribute and name.endswith("_id") and one not in attribute["enum"]:
                if name not in ("class_uid", "category_uid"):
                    problems.append(f"{where}.{name}: {one} not in {attribute['enum']}")
    return problems


def check_ocsf(event: dict[str, Any]) -> None:
    assert ocsf_problems(event, OCSF["class"], "event") == []
    assert event["class_uid"] == OCSF["class"]["uid"] == 6003
    assert event["category_uid"] == OCSF["class"]["category_uid"] == 6
    assert event["type_uid"] == event["class_uid"] * 100 + event["activity_id"]
    assert event["metadata"]["version"] == OCSF_VERSION == OCSF["ocsf_version"]
    if "ip" in event["src_endpoint"]:
        ipaddress.ip_address(event["src_endpoint"]["ip"])


def test_schema_vector_is_for_the_version_we_cite() -> None:
    assert OCSF["ocsf_version"] == "1.8.0"
    assert OCSF["class"]["name"] == "api_activity"


def test_ocsf_served_request() -> None:
    entry, leaf = sealed(served())
    event = ocsf_event(entry, leaf, OPTIONS)
    check_ocsf(event)
    assert (event["activity_id"], event["activity_name"]) == (1, "Create")  # POST
    assert (event["status_id"], event["severity_id"]) == (1, 1)
    assert event["metadata"]["sequence"] == 7 and event["metadata"]["uid"] == entry.record.record_id
    assert event["metadata"]["correlation_uid"] == "req-3"
    assert event["unmapped"]["leaf_hash"] == leaf.hex() and event["unmapped"]["log_index"] == 7
    user = {"uid": "apikey:alice", "name": "alice", "groups": [{"name": "risk"}]}
    assert event["actor"]["user"] == {**user, "credential_uid": "k-9"}
    assert event["ai_model"] == {"name": "smollm2-135m-instruct", "ai_provider": "Internal"}
    assert event["message_context"]["total_tokens"] == 42
    assert event["duration"] == 840 and event["http_response"] == {"code": 200, "latency": 840}
    assert event["time"] == int(T0.timestamp() * 1000) + 3000


def test_ocsf_refusals_and_acts() -> None:
    entry, leaf = sealed(denied(), content=False)
    event = ocsf_event(entry, leaf, OPTIONS)
    check_ocsf(event)
    assert (event["status_id"], event["status"], event["severity_id"]) == (2, "Failure", 3)
    assert event["status_detail"] == entry.record.denial_reason
    assert event["api"]["response"]["error_message"] == entry.record.denial_reason
    assert "message_context" not in event  # no tokens were counted

    unauthenticated = make_record(
        "r", event=AuditEvent.DENIED, outcome=Outcome.DENIED, status_code=401,
        path="/audit/records",
    )  # fmt: skip
    anonymous, leaf = sealed(unauthenticated, content=False)
    event = ocsf_event(anonymous, leaf, OPTIONS)
    check_ocsf(event)
    assert event["actor"]["user"]["name"] == "unauthenticated" and event["severity_id"] == 4
    assert event["src_endpoint"] == {"name": "unknown"}

    act = make_record(
        "act-1", event=AuditEvent.AUDIT_SHRED, outcome=Outcome.OK, http_method="CLI",
        path="audit shred", status_code=0, subject="cli:carol", username="carol",
        auth_method="cli", params={"target_subject": "apikey:bob", "reason": "GDPR art. 17"},
    )  # fmt: skip
    entry, leaf = sealed(act, content=False)
    event = ocsf_event(entry, leaf, OPTIONS)
    check_ocsf(event)
    assert (event["activity_id"], event["activity_name"]) == (4, "Delete")
    assert "http_request" not in event and "ai_model" not in event
    assert event["unmapped"]["params"]["target_subject"] == "apikey:bob"


def test_ocsf_checker_catches_mistakes() -> None:
    entry, leaf = sealed(served())
    event = ocsf_event(entry, leaf, OPTIONS)
    for mutate, expected in (
        (lambda e: e.pop("actor"), "event.actor: required"),
        (lambda e: e.update(invented=1), "event.invented: not an attribute"),
        (lambda e: e.update(severity_id=9), "event.severity_id: 9 not in"),
        (lambda e: e["ai_model"].pop("ai_provider"), "event.ai_model.ai_provider: required"),
        (lambda e: e.update(time="now"), "event.time: not long_t"),
    ):
        copy = json.loads(json.dumps(event))
        mutate(copy)
        assert any(p.startswith(expected) for p in ocsf_problems(copy, OCSF["class"], "event"))


def test_ocsf_rendering_is_json_in_a_syslog_message() -> None:
    entry, leaf = sealed(served())
    header, sd, msg = split_syslog(render("ocsf", entry, leaf, OPTIONS))
    assert sd == "-" and header[5] == "inference.completion"
    assert json.loads(msg) == ocsf_event(entry, leaf, OPTIONS)
