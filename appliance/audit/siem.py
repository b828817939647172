"""An audit record's metadata as a SIEM ingests it: RFC 5424 syslog, ArcSight CEF, OCSF.

Pure: values in, bytes out; no socket, no clock, no settings object. Only metadata
leaves: the encrypted content (prompts, answers) is never read, so it cannot be sent.
Every message carries the record's log index and leaf hash, so a SIEM copy can be
checked against the Merkle log later (``appliance audit prove``).

- RFC 5424 (The Syslog Protocol) §6: header, STRUCTURED-DATA (§6.3, escaping §6.3.3),
  NILVALUE; octet-counting framing for stream transports: RFC 6587 §3.4.1 (TCP) and
  RFC 5425 §4.3 (TLS).
- ArcSight Common Event Format (CEF), "Implementing ArcSight CEF" rev. 25: header
  ``CEF:0|Vendor|Product|Version|Class ID|Name|Severity|Extension``, escaping of ``|``
  and ``\\`` in the header and of ``=``, ``\\`` and newlines in extension values.
- OCSF 1.8.0: API Activity (class 6003, category 6 Application Activity) with the
  ``ai_operation`` profile (``ai_model``, ``message_context``).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any

from appliance.audit.records import AuditEvent, Outcome, SealedEntry, canonical_json, format_time

__all__ = [
    "FACILITIES",
    "NILVALUE",
    "OCSF_VERSION",
    "VENDOR",
    "Level",
    "SiemOptions",
    "cef_message",
    "escape_cef_extension",
    "escape_cef_header",
    "escape_sd_value",
    "event_name",
    "level_of",
    "ocsf_event",
    "octet_counted",
    "render",
    "sd_element",
    "syslog_message",
    "syslog_timestamp",
]

NILVALUE = "-"
VENDOR = "sovereign-appliance"
OCSF_VERSION = "1.8.0"
# RFC 5424 §6.2.1 table 1 (numerical codes); names as in syslog.h.
FACILITIES = {
    "kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6,
    "news": 7, "uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "audit": 13,
    "alert": 14, "clock": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19,
    "local4": 20, "local5": 21, "local6": 22, "local7": 23,
}  # fmt: skip
_UTF8_BOM = b"\xef\xbb\xbf"


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


# -- RFC 5424 -------------------------------------------------------------------------


def syslog_timestamp(value: datetime) -> str:
    """RFC 5424 §6.2.3 (RFC 3339): microseconds with trailing zeros dropped, ``Z`` for
    UTC, else the numeric offset."""
    if value.tzinfo is None:
        raise ValueError("syslog timestamps must be timezone-aware")
    text = value.replace(tzinfo=None).isoformat(timespec="seconds")
    if value.microsecond:
        text += "." + f"{value.microsecond:06d}".rstrip("0")
    offset = value.utcoffset()
    if not offset:
        return text + "Z"
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{text}{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _header_field(value: str | None, width: int) -> str:
    """PRINTUSASCII (%d33-126), at most ``width`` octets, NILVALUE when empty."""
    if not value:
        return NILVALUE
    clean = "".join(c if "!" <= c <= "~" else "_" for c in value)[:width]
    return clean or NILVALUE


def _sd_name(name: str) -> str:
    """SD-NAME (§6.3.2, §6.3.3): 1-32 PRINTUSASCII except ``=``, space, ``]``, ``"``."""
    if not 1 <= len(name) <= 32 or any(not "!" <= c <= "~" or c in '= ]"' for c in name):
        raise ValueError(f"not an RFC 5424 SD-NAME: {name!r}")
    return name


def escape_sd_value(value: str) -> str:
    """PARAM-VALUE (§6.3.3): ``"``, ``\\`` and ``]`` MUST be escaped with a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def sd_element(sd_id: str, params: Sequence[tuple[str, str]]) -> str:
    """``[SD-ID PARAM-NAME="PARAM-VALUE" ...]`` (§6.3.1)."""
    body = "".join(f' {_sd_name(k)}="{escape_sd_value(v)}"' for k, v in params)
    return f"[{_sd_name(sd_id)}{body}]"


def syslog_message(
    *,
    facility: int,
    severity: int,
    timestamp: datetime | None,
    hostname: str | None,
    app_name: str | None,
    procid: str | None,
    msgid: str | None,
    structured_data: Sequence[str] = (),
    msg: str | None = None,
    bom: bool = False,
) -> bytes:
    """One RFC 5424 message (§6), unframed. ``bom`` marks MSG as UTF-8 (MSG-UTF8);
    without it MSG is MSG-ANY, which is what most receivers parse CEF and JSON from."""
    if not (0 <= facility <= 23 and 0 <= severity <= 7):
        raise ValueError("facility is 0-23 and severity 0-7")
    header = " ".join(
        (
            f"<{facility * 8 + severity}>1",  # PRI (§6.2.1) and VERSION
            syslog_timestamp(timestamp) if timestamp else NILVALUE,
            _header_field(hostname, 255),
            _header_field(app_name, 48),
            _header_field(procid, 128),
            _header_field(msgid, 32),
            "".join(structured_data) or NILVALUE,
        )
    ).encode("utf-8", "replace")  # ASCII but for PARAM-VALUEs, which are UTF-8 (§6.3.3)
    if msg is None:
        return header
    return header + b" " + (_UTF8_BOM if bom else b"") + msg.encode("utf-8", "replace")


def octet_counted(message: bytes) -> bytes:
    """RFC 6587 §3.4.1 / RFC 5425 §4.3: ``MSG-LEN SP SYSLOG-MSG`` (length in octets)."""
    return b"%d %s" % (len(message), message)


# -- CEF ------------------------------------------------------------------------------


def escape_cef_header(value: str) -> str:
    """Header fields: ``\\`` and ``|`` escaped; a newline cannot appear (made a space)."""
    value = value.replace("\\", "\\\\").replace("|", "\\|")
    return value.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")


def escape_cef_extension(value: str) -> str:
    """Extension values: ``\\`` and ``=`` escaped; newlines written as ``\\n``/``\\r``."""
    value = value.replace("\\", "\\\\").replace("=", "\\=")
    return value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


def cef_message(
    vendor: str,
    product: str,
    version: str,
    class_id: str,
    name: str,
    severity: int | str,
    extension: Sequence[tuple[str, str]] = (),
) -> str:
    header = [vendor, product, version, class_id, name, str(severity)]
    ext = " ".join(f"{key}={escape_cef_extension(value)}" for key, value in extension)
    return "CEF:0|" + "|".join(escape_cef_header(h) for h in header) + "|" + ext


# -- one sealed entry, three renderings -----------------------------------------------


def _fields(entry: SealedEntry, leaf_hash: bytes, origin: str) -> list[tuple[str, Any]]:
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


def _present(*pairs: tuple[str, Any]) -> dict[str, Any]:
    """The pairs whose value is not None, in order."""
    return {k: v for k, v in pairs if v is not None}


def _level(entry: SealedEntry) -> Level:
    r = entry.record
    return level_of(str(r.event), str(r.outcome), r.path)


def _epoch_ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


def _cef_extension(entry: SealedEntry, leaf_hash: bytes, origin: str) -> list[tuple[str, str]]:
    r = entry.record
    pairs: list[tuple[str, Any]] = [("rt", _epoch_ms(r.recorded_at))]
    address = _ip(r.client_addr)
    if address is not None and address.version == 4:
        pairs.append(("src", r.client_addr))
    elif address is not None:
        pairs += [("c6a2", r.client_addr), ("c6a2Label", "Source IPv6 Address")]
    else:
        pairs.append(("shost", r.client_addr))
    pairs += [
        ("suid", r.subject), ("suser", r.username), ("requestMethod", r.http_method),
        ("request", r.path), ("cat", str(r.event)), ("outcome", str(r.outcome)),
        ("reason", r.denial_reason), ("externalId", r.record_id), ("deviceExternalId", origin),
        ("cn1", entry.index), ("cn1Label", "logIndex"),
        ("cn2", r.prompt_tokens), ("cn2Label", "promptTokens"),
        ("cn3", r.completion_tokens), ("cn3Label", "completionTokens"),
        ("cs1", r.model), ("cs1Label", "model"), ("cs2", r.team), ("cs2Label", "team"),
        ("cs3", r.auth_method), ("cs3Label", "authMethod"),
        ("cs4", r.key_id), ("cs4Label", "apiKeyId"),
        ("cs5", leaf_hash.hex()), ("cs5Label", "leafHash"),
        ("cs6", r.request_id), ("cs6Label", "requestId"),
    ]  # fmt: skip
    rest = dict(_fields(entry, leaf_hash, origin))
    for name in ("statusCode", "latencyMs", "params", "contentSha256", "contentKeyId"):
        pairs.append(("appliance" + name[0].upper() + name[1:], rest[name]))
    # A label goes only with its value (pairs[i - 1] for each ...Label).
    kept = [
        (k, str(v))
        for i, (k, v) in enumerate(pairs)
        if v is not None and not (k.endswith("Label") and pairs[i - 1][1] is None)
    ]
    return kept


def _ip(value: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value) if value else None
    except ValueError:
        return None


_ACTIVITIES = {1: "Create", 2: "Read", 3: "Update", 4: "Delete", 99: "Other"}
_ACTIVITY_OF_METHOD = {"POST": 1, "GET": 2, "HEAD": 2, "PUT": 3, "PATCH": 3, "DELETE": 4}
_ACTIVITY_OF_ACT: dict[str, int] = {
    AuditEvent.AUDIT_SEARCH: 2, AuditEvent.AUDIT_READ: 2, AuditEvent.AUDIT_EXPORT: 2,
    AuditEvent.AUDIT_SHRED: 4, AuditEvent.AUDIT_RETENTION: 4,
}  # fmt: skip
_STATUS: dict[str, tuple[int, str]] = {
    Outcome.OK: (1, "Success"), Outcome.ACCEPTED: (1, "Success"),
    Outcome.CLIENT_DISCONNECTED: (99, "Client disconnected"),
}  # fmt: skip


def ocsf_event(entry: SealedEntry, leaf_hash: bytes, options: SiemOptions) -> dict[str, Any]:
    """OCSF 1.8.0 API Activity (6003): an API request to the appliance, served or
    refused. Attributes OCSF has no place for go under ``unmapped``."""
    r = entry.record
    event, outcome = str(r.event), str(r.outcome)
    activity = _ACTIVITY_OF_ACT.get(event) or _ACTIVITY_OF_METHOD.get(r.http_method, 99)
    severity_id, severity = _level(entry).ocsf_severity
    status_id, status = _STATUS.get(outcome, (2, "Failure"))
    user: dict[str, Any] = {"type_id": 0, "type": "Unknown", "name": "unauthenticated"}
    if r.subject or r.username:
        groups = [{"name": r.team}] if r.team else None
        user = _present(
            ("uid", r.subject), ("name", r.username), ("groups", groups),
            ("credential_uid", r.key_id),
        )  # fmt: skip
    source = {"ip": r.client_addr} if _ip(r.client_addr) else {"name": r.client_addr or "unknown"}
    service = {"name": options.app_name, "uid": options.origin}
    product = {"name": options.app_name, "vendor_name": VENDOR, "version": options.product_version}
    response = _present(
        ("code", r.status_code), ("error", outcome if r.denial_reason else None),
        ("error_message", r.denial_reason),
    )  # fmt: skip
    unmapped = _present(
        ("log_index", entry.index), ("leaf_hash", leaf_hash.hex()),
        ("content_sha256", entry.content_sha256.hex() if entry.content_sha256 else None),
        ("content_key_id", entry.content_key_id), ("event", event), ("outcome", outcome),
        ("auth_method", r.auth_method), ("params", r.params),
    )  # fmt: skip
    document: dict[str, Any] = {
        "category_uid": 6,
        "category_name": "Application Activity",
        "class_uid": 6003,
        "class_name": "API Activity",
        "activity_id": activity,
        "activity_name": _ACTIVITIES[activity],
        "type_uid": 6003 * 100 + activity,
        "type_name": f"API Activity: {_ACTIVITIES[activity]}",
        "time": _epoch_ms(r.recorded_at),
        "timezone_offset": 0,
        "severity_id": severity_id,
        "severity": severity,
        "status_id": status_id,
        "status": status,
        "status_code": outcome,
        "message": event_name(event, outcome),
        "metadata": {
            "version": OCSF_VERSION,
            "product": product,
            "uid": r.record_id,
            "correlation_uid": r.request_id,
            "sequence": entry.index,
            "log_name": options.origin,
            "event_code": event,
            "original_time": format_time(r.recorded_at),
        },
        "actor": {"user": user},
        "src_endpoint": source,
        "api": {
            "operation": f"{r.http_method} {r.path}",
            "request": {"uid": r.request_id},
            "response": response,
            "service": service,
        },
        "unmapped": unmapped,
    }
    if r.latency_ms is not None:
        document["duration"] = r.latency_ms
    if r.denial_reason:
        document["status_detail"] = r.denial_reason
    if r.path.startswith("/"):  # an HTTP request (acts from the CLI are not)
        url = {"path": r.path}
        document["http_request"] = {"http_method": r.http_method, "url": url, "uid": r.request_id}
        document["http_response"] = _present(("code", r.status_code), ("latency", r.latency_ms))
    if r.model:
        document["ai_model"] = {"name": r.model, "ai_provider": "Internal"}
        document["metadata"]["profiles"] = ["ai_operation"]
        tokens = _present(
            ("prompt_tokens", r.prompt_tokens), ("completion_tokens", r.completion_tokens)
        )
        if tokens:
            if len(tokens) == 2:
                tokens["total_tokens"] = sum(tokens.values())
            document["message_context"] = {**tokens, "service": service}
    return document


def render(fmt: str, entry: SealedEntry, leaf_hash: bytes, options: SiemOptions) -> bytes:
    """One record as an RFC 5424 message (unframed) whose payload is ``fmt``:
    ``syslog`` (fields as STRUCTURED-DATA, a short MSG), ``cef`` (MSG is a CEF line) or
    ``ocsf`` (MSG is the OCSF JSON event)."""
    r = entry.record
    level = _level(entry)
    name = event_name(str(r.event), str(r.outcome))
    sd: list[str] = []
    if fmt == "syslog":
        fields = _present(*_fields(entry, leaf_hash, options.origin))
        sd = [sd_element(options.sd_id, [(k, str(v)) for k, v in fields.items()])]
        msg = f"{name} (log index {entry.index})"
    elif fmt == "cef":
        msg = cef_message(
            VENDOR, options.app_name, options.product_version, str(r.event),
            name, level.cef_severity, _cef_extension(entry, leaf_hash, options.origin),
        )  # fmt: skip
    elif fmt == "ocsf":
        document = ocsf_event(entry, leaf_hash, options)
        msg = json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
    else:
        raise ValueError(f"unknown SIEM format {fmt!r}: syslog, cef or ocsf")
    return syslog_message(
        facility=options.facility,
        severity=level.syslog_severity,
        timestamp=r.recorded_at.astimezone(UTC),
        hostname=options.hostname,
        app_name=options.app_name,
        procid=None,
        msgid=str(r.event),
        structured_data=sd,
        msg=msg,
    )
