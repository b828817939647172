"""Shared by the SIEM format tests (tests/unit/audit/test_siem*.py): records to render,
the options they are rendered with, and small parsers a receiver would use."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from appliance.audit.merkle import leaf_hash
from appliance.audit.records import AuditEvent, Outcome, SealedEntry, leaf_bytes
from appliance.audit.siem import SiemOptions
from tests.support.audit import content_record, make_record

VECTORS = Path(__file__).parents[1] / "vectors" / "siem"
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


def unescape_sd(value: str) -> str:
    """RFC 5424 §6.3.3 as a receiver reads it: ``\\`` before ``"``, ``\\`` or ``]`` is
    dropped; any other backslash is kept."""
    return re.sub(r'\\([\\"\]])', r"\1", value)


def parse_sd(element: str) -> dict[str, str]:
    assert element.startswith("[") and element.endswith("]")
    pairs = re.findall(r' ([^= \]"]+)="((?:[^"\\]|\\.)*)"', element[1:-1])
    return {k: unescape_sd(v) for k, v in pairs}


def unescape_cef_extension(value: str) -> str:
    table = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}
    return re.sub(r"\\([\\=nr])", lambda m: table[m.group(1)], value)


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


def parse_cef_extension(line: str) -> dict[str, str]:
    extension = line.split("|", 7)[7] if "\\|" not in line else re.split(r"(?<!\\)\|", line)[7]
    keys = list(re.finditer(r"(?:^| )([A-Za-z0-9_]+)=", extension))
    values = {}
    for i, match in enumerate(keys):
        end = keys[i + 1].start() if i + 1 < len(keys) else len(extension)
        values[match.group(1)] = unescape_cef_extension(extension[match.end() : end])
    return values
