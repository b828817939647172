"""An audit record's metadata as an ArcSight CEF line.

"Implementing ArcSight CEF" rev. 25: header
``CEF:0|Vendor|Product|Version|Class ID|Name|Severity|Extension``, escaping of ``|``
and ``\\`` in the header and of ``=``, ``\\`` and newlines in extension values. Pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from appliance.audit.records import SealedEntry
from appliance.audit.siem import (
    VENDOR,
    SiemOptions,
    entry_level,
    epoch_ms,
    event_name,
    ip_of,
    record_fields,
)

__all__ = ["cef_extension", "cef_line", "cef_message", "escape_cef_extension", "escape_cef_header"]


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


def cef_extension(entry: SealedEntry, leaf_hash: bytes, origin: str) -> list[tuple[str, str]]:
    r = entry.record
    pairs: list[tuple[str, Any]] = [("rt", epoch_ms(r.recorded_at))]
    address = ip_of(r.client_addr)
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
    rest = dict(record_fields(entry, leaf_hash, origin))
    for name in ("statusCode", "latencyMs", "params", "contentSha256", "contentKeyId"):
        pairs.append(("appliance" + name[0].upper() + name[1:], rest[name]))
    # A label goes only with its value (pairs[i - 1] for each ...Label).
    kept = [
        (k, str(v))
        for i, (k, v) in enumerate(pairs)
        if v is not None and not (k.endswith("Label") and pairs[i - 1][1] is None)
    ]
    return kept


def cef_line(entry: SealedEntry, leaf_hash: bytes, options: SiemOptions) -> str:
    """One record as a CEF line (the MSG of a forwarded message, a line of an export)."""
    r = entry.record
    return cef_message(
        VENDOR, options.app_name, options.product_version, str(r.event),
        event_name(str(r.event), str(r.outcome)), entry_level(entry).cef_severity,
        cef_extension(entry, leaf_hash, options.origin),
    )  # fmt: skip
