"""An audit record's metadata as a SIEM sees it: the fields, their order, how much a
record matters, and its name; the formats build on it (:mod:`~appliance.audit.siem_cef`,
:mod:`~appliance.audit.siem_ocsf`, :mod:`~appliance.audit.siem_syslog`).

Pure: values in, values out; no socket, no clock, no settings object. Only metadata
leaves: the encrypted content (prompts, answers) is never read, so it cannot be sent.
Every message carries the log's origin, the record's log index (together: the dedupe
key) and leaf hash, so a SIEM copy can be checked against the Merkle log later
(``appliance audit prove``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum
from typing import Any

from appliance.audit.records import AuditEvent, Outcome, SealedEntry, canonical_json
from appliance.audit.siem_rfc5424 import FACILITIES, NILVALUE

__all__ = [
    "VENDOR",
    "Level",
    "SiemOptions",
    "entry_level",
    "epoch_ms",
    "event_name",
    "ip_of",
    "level_of",
    "present",
    "record_fields",
]

VENDOR = "sovereign-appliance"


class Level(IntEnum):
    """How much a record matters to a SOC. Refusals rank above served requests."""

    INFO = 0  # served, accepted, abandoned by the client
    LOW = 1  # invalid request, engine failure, an act on the audit log
    MEDIUM = 2  # refused: authentication, policy, quota
    HIGH = 3  # refused at the audit API itself (/audit/...)

    @property
    def syslog_severity(self) -> int:  # RFC 5424 §6.2.1 table 2
        return (6, 5, 4, 3)[self]  # informational, notice, warning, error

    @property
    def cef_severity(self) -> int:  # CEF: 0-3 Low, 4-6 Medium, 7-8 High, 9-10 Very-High
        return (2, 3, 5, 7)[self]

    @property
    def ocsf_severity(self) -> tuple[int, str]:  # OCSF severity_id and its caption
        return ((1, "Informational"), (2, "Low"), (3, "Medium"), (4, "High"))[self]


@dataclass(frozen=True)
class SiemOptions:
    """What the sending side adds to every message."""

    origin: str  # the log's checkpoint origin
    hostname: str = NILVALUE  # RFC 5424 HOSTNAME of the sender
    app_name: str = "appliance"
    facility: int = FACILITIES["authpriv"]
    sd_id: str = "appliance@32473"  # 32473: RFC 5612's documentation enterprise number
    product_version: str = "0"


def level_of(event: str, outcome: str, path: str) -> Level:
    if outcome == Outcome.DENIED:
        return Level.HIGH if path.startswith("/audit") else Level.MEDIUM
    if outcome in (Outcome.INVALID, Outcome.UPSTREAM_ERROR) or event.startswith("audit."):
        return Level.LOW
    return Level.INFO


_NAMES: dict[tuple[str, str], str] = {
    (AuditEvent.REQUEST, Outcome.ACCEPTED): "LLM request accepted",
    (AuditEvent.EGRESS_REQUEST, Outcome.ACCEPTED): "LLM request sent to an external provider",
    (AuditEvent.COMPLETION, Outcome.OK): "LLM answer served",
    (AuditEvent.COMPLETION, Outcome.UPSTREAM_ERROR): "LLM request failed at the engine",
    (AuditEvent.COMPLETION, Outcome.CLIENT_DISCONNECTED): "LLM answer abandoned by the client",
    (AuditEvent.DENIED, Outcome.DENIED): "Request denied",
    (AuditEvent.DENIED, Outcome.INVALID): "Request refused as invalid",
    (AuditEvent.AUDIT_SEARCH, Outcome.OK): "Audit log searched",
    (AuditEvent.AUDIT_READ, Outcome.OK): "Audit record content revealed",
    (AuditEvent.AUDIT_EXPORT, Outcome.OK): "Audit log exported",
    (AuditEvent.AUDIT_SHRED, Outcome.OK): "Subject crypto-shredded",
    (AuditEvent.AUDIT_RETENTION, Outcome.OK): "Audit content retention applied",
}


def event_name(event: str, outcome: str) -> str:
    """A short human name for the kind of record (CEF Name, syslog MSG)."""
    return _NAMES.get((event, outcome), f"{event} {outcome}")


def record_fields(entry: SealedEntry, leaf_hash: bytes, origin: str) -> list[tuple[str, Any]]:
    """The record's metadata with its place in the log, in a fixed order; values None
    where the record has none. Never the content."""
    r = entry.record
    return [
        ("index", entry.index), ("leafHash", leaf_hash.hex()), ("origin", origin),
        ("recordId", r.record_id), ("requestId", r.request_id), ("event", str(r.event)),
        ("outcome", str(r.outcome)), ("statusCode", r.status_code), ("method", r.http_method),
        ("path", r.path), ("subject", r.subject), ("username", r.username), ("team", r.team),
        ("authMethod", r.auth_method), ("keyId", r.key_id), ("clientAddr", r.client_addr),
        ("model", r.model), ("promptTokens", r.prompt_tokens),
        ("completionTokens", r.completion_tokens), ("latencyMs", r.latency_ms),
        ("denialReason", r.denial_reason),
        ("params", canonical_json(r.params).decode() if r.params is not None else None),
        ("contentSha256", entry.content_sha256.hex() if entry.content_sha256 else None),
        ("contentKeyId", entry.content_key_id),
    ]  # fmt: skip


def present(*pairs: tuple[str, Any]) -> dict[str, Any]:
    """The pairs whose value is not None, in order."""
    return {k: v for k, v in pairs if v is not None}


def entry_level(entry: SealedEntry) -> Level:
    r = entry.record
    return level_of(str(r.event), str(r.outcome), r.path)


def epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def ip_of(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value) if value else None
    except ValueError:
        return None
