"""appliance/audit/siem_ocsf.py: OCSF 1.8.0 API Activity events, validated against OCSF's
own JSON schema (package ocsf-json-schema) and, stricter, against the 1.8.0
definitions resolved in tests/vectors/siem/ (tests/vectors/siem/generate_ocsf.py)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from appliance.audit.records import AuditEvent, Outcome
from appliance.audit.siem_ocsf import OCSF_VERSION, ocsf_event
from appliance.audit.siem_syslog import render
from tests.support.audit import T0, make_record
from tests.support.ocsf import ocsf_problems as schema_problems
from tests.support.siem import (
    OCSF,
    OPTIONS,
    denied,
    sealed,
    served,
    split_syslog,
)

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
    assert schema_problems(event) == []  # OCSF's own JSON schema for the class
    assert ocsf_problems(event, OCSF["class"], "event") == []  # stricter: no extra keys
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


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda e: e.pop("actor"), "(event): 'actor' is a required property"),
        (lambda e: e.update(severity_id=9), "severity_id: 9 is not one of"),
        (lambda e: e["ai_model"].pop("ai_provider"), "ai_model: 'ai_provider' is a required"),
        (lambda e: e.update(time="now"), "time: 'now' is not of type"),
        (lambda e: e["metadata"].pop("product"), "metadata: 'product' is a required"),
    ],
    ids=["no-actor", "bad-severity", "no-ai-provider", "time-text", "no-product"],
)
def test_ocsf_schema_package_catches_mistakes(mutate: Any, expected: str) -> None:
    """The schema check is real: each broken copy of a valid event is named."""
    entry, leaf = sealed(served())
    event = ocsf_event(entry, leaf, OPTIONS)
    assert schema_problems(event) == []
    copy = json.loads(json.dumps(event))
    mutate(copy)
    problems = schema_problems(copy)
    assert any(p.startswith(expected) for p in problems), problems


def test_ocsf_rendering_is_json_in_a_syslog_message() -> None:
    entry, leaf = sealed(served())
    header, sd, msg = split_syslog(render("ocsf", entry, leaf, OPTIONS))
    assert sd == "-" and header[5] == "inference.completion"
    assert json.loads(msg) == ocsf_event(entry, leaf, OPTIONS)
