"""An audit record's metadata as an OCSF event.

OCSF 1.8.0: API Activity (class 6003, category 6 Application Activity) with the
``ai_operation`` profile (``ai_model``, ``message_context``). Pure. Tests validate
every event against the OCSF 1.8.0 JSON schema (the ``ocsf-json-schema`` package).
"""

from __future__ import annotations

import json
from typing import Any

from appliance.audit.records import AuditEvent, Outcome, SealedEntry, format_time
from appliance.audit.siem import (
    VENDOR,
    SiemOptions,
    entry_level,
    epoch_ms,
    event_name,
    ip_of,
    present,
)

__all__ = ["OCSF_VERSION", "ocsf_event", "ocsf_json"]

OCSF_VERSION = "1.8.0"


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
    severity_id, severity = entry_level(entry).ocsf_severity
    status_id, status = _STATUS.get(outcome, (2, "Failure"))
    user: dict[str, Any] = {"type_id": 0, "type": "Unknown", "name": "unauthenticated"}
    if r.subject or r.username:
        groups = [{"name": r.team}] if r.team else None
        user = present(
            ("uid", r.subject), ("name", r.username), ("groups", groups),
            ("credential_uid", r.key_id),
        )  # fmt: skip
    source = {"ip": r.client_addr} if ip_of(r.client_addr) else {"name": r.client_addr or "unknown"}
    service = {"name": options.app_name, "uid": options.origin}
    product = {"name": options.app_name, "vendor_name": VENDOR, "version": options.product_version}
    response = present(
        ("code", r.status_code), ("error", outcome if r.denial_reason else None),
        ("error_message", r.denial_reason),
    )  # fmt: skip
    unmapped = present(
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
        "time": epoch_ms(r.recorded_at),
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
        document["http_response"] = present(("code", r.status_code), ("latency", r.latency_ms))
    if r.model:
        document["ai_model"] = {"name": r.model, "ai_provider": "Internal"}
        document["metadata"]["profiles"] = ["ai_operation"]
        tokens = present(
            ("prompt_tokens", r.prompt_tokens), ("completion_tokens", r.completion_tokens)
        )
        if tokens:
            if len(tokens) == 2:
                tokens["total_tokens"] = sum(tokens.values())
            document["message_context"] = {**tokens, "service": service}
    return document


def ocsf_json(entry: SealedEntry, leaf_hash: bytes, options: SiemOptions) -> str:
    """The event as one line of compact JSON (the MSG of a forwarded message, a line
    of an export), keys sorted so that equal events are equal bytes."""
    document = ocsf_event(entry, leaf_hash, options)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False, sort_keys=True)
