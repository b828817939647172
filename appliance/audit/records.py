"""What an audit record says, and the canonical bytes that go into the Merkle leaf.

Plain values; no I/O. The leaf of record *i* is the canonical JSON of its searchable
metadata, its index, and the SHA-256 of its encrypted content envelope (never the
content itself), so destroying a subject's key erases the content and leaves every
leaf, and so every proof, intact.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "LEAF_VERSION",
    "MAX_NAMES",
    "NAME_WIDTH",
    "AuditEvent",
    "AuditRecord",
    "Outcome",
    "SealedEntry",
    "canonical_json",
    "format_time",
    "json_safe",
    "leaf_bytes",
    "leaf_bytes_of",
    "metadata_bytes",
    "metadata_of",
    "storable",
    "storable_names",
    "storable_text",
]

LEAF_VERSION = 1


class AuditEvent(StrEnum):
    # Written before the request reaches an engine; if it cannot be written the request
    # is refused with 503 (fail closed).
    REQUEST = "inference.request"
    # Written before a request leaves for an external provider (issue #17): its metadata
    # holds the egress decision, its sealed content what is sent. The answer's record is
    # an ordinary COMPLETION.
    EGRESS_REQUEST = "egress.request"
    # Written when the answer is complete, failed or abandoned.
    COMPLETION = "inference.completion"
    # A request refused before any engine saw it (auth, policy, validation).
    DENIED = "request.denied"
    # Acts on the audit log itself, each recorded before it takes effect.
    AUDIT_SEARCH = "audit.search"  # metadata searched (PCI DSS 10.2.1.3: access to logs)
    AUDIT_READ = "audit.read"
    AUDIT_EXPORT = "audit.export"
    AUDIT_SHRED = "audit.shred"
    AUDIT_RETENTION = "audit.retention"
    AUDIT_KEYS = "audit.keys"  # the log's keys moved or changed (appliance.audit.key_history)
    # Browser sign-in and sign-out (API key or Keycloak), failed sign-ins included.
    SIGN_IN = "auth.sign_in"
    SIGN_OUT = "auth.sign_out"
    # Admin acts on API keys, each recorded before it takes effect.
    API_KEY_CREATE = "admin.api_key.create"
    API_KEY_REVOKE = "admin.api_key.revoke"
    # Admin acts on LoRA adapters in the engines, each recorded before it takes effect.
    ADAPTER_LOAD = "admin.adapter.load"
    ADAPTER_UNLOAD = "admin.adapter.unload"


class Outcome(StrEnum):
    ACCEPTED = "accepted"
    OK = "ok"
    DENIED = "denied"
    INVALID = "invalid"
    UPSTREAM_ERROR = "upstream_error"
    CLIENT_DISCONNECTED = "client_disconnected"


@dataclass(frozen=True)
class AuditRecord:
    record_id: str
    recorded_at: datetime
    event: AuditEvent
    request_id: str
    http_method: str
    path: str
    status_code: int
    outcome: Outcome
    subject: str | None = None
    username: str | None = None
    auth_method: str | None = None
    key_id: str | None = None
    client_addr: str | None = None
    model: str | None = None
    params: dict[str, Any] | None = field(default=None)
    denial_reason: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    latency_ms: int | None = None
    team: str | None = None
    # Prompt or answer; sealed in the encrypted envelope, never stored in clear. Not
    # part of equality (a record read back without decrypting equals the one written)
    # and never in repr (so it cannot reach a log line by accident).
    content: dict[str, Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SealedEntry:
    """A record as the log holds it: its place, its metadata, and the hash of its
    encrypted content (None when it had no content)."""

    index: int
    record: AuditRecord
    content_sha256: bytes | None
    content_key_id: str | None


# Columns of ``audit_log`` that hold text, with their widths (migration 0002): a value
# past a width, a NUL (PostgreSQL text refuses it) or a lone surrogate (no UTF-8 encoder
# writes it) would fail the whole group-commit batch the record travels in.
TEXT_COLUMNS = {
    "request_id": 64,
    "http_method": 8,
    "path": 200,
    "subject": 200,
    "username": 200,
    "team": 200,
    "auth_method": 16,
    "key_id": 32,
    "client_addr": 64,
    "model": 200,
    "denial_reason": None,
}
_SURROGATE = re.compile("[\ud800-\udfff]")
_REPLACEMENT = "\ufffd"


def storable_text(text: str, width: int | None = None, *, keep_nul: bool = False) -> str:
    """``text`` as every store can hold it: lone surrogates become U+FFFD, NUL is
    dropped (unless ``keep_nul``: sealed content is bytes), cut to ``width``."""
    if not text.isascii():
        text = _SURROGATE.sub(_REPLACEMENT, text)
    if not keep_nul and "\x00" in text:
        text = text.replace("\x00", "")
    return text if width is None else text[:width]


# Name lists in clear-text metadata (tools offered, tool calls made): at most
# ``MAX_NAMES`` names of at most ``NAME_WIDTH`` characters (OpenAI's own limit for a
# function name), so a client cannot grow every record's leaf at will.
MAX_NAMES = 32
NAME_WIDTH = 64


def storable_names(names: Iterable[Any]) -> list[str]:
    """The string ``names`` as metadata holds them: normalised (:func:`storable_text`),
    cut to ``NAME_WIDTH``, empty ones dropped, the first ``MAX_NAMES`` kept in order."""
    kept: list[str] = []
    for name in names:
        if len(kept) == MAX_NAMES:
            break
        if isinstance(name, str):
            clean = storable_text(name, NAME_WIDTH)
            if clean:
                kept.append(clean)
    return kept


def _storable_value(value: Any, *, keep_nul: bool) -> Any:
    if isinstance(value, str):
        return storable_text(value, keep_nul=keep_nul)
    if isinstance(value, dict):
        return {
            storable_text(str(k), keep_nul=keep_nul): _storable_value(v, keep_nul=keep_nul)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_storable_value(v, keep_nul=keep_nul) for v in value]
    return value


def storable(record: AuditRecord) -> AuditRecord:
    """The record as it can be sealed and stored: the same record when it already can
    (the common case costs a scan of its short metadata strings), else a copy with
    text normalised (:func:`storable_text`). Content keeps NUL (it is encrypted bytes)."""
    changes: dict[str, Any] = {}
    for name, width in TEXT_COLUMNS.items():
        value = getattr(record, name)
        if isinstance(value, str):
            clean = storable_text(value, width)
            if clean != value:
                changes[name] = clean
    if record.params is not None:
        params = _storable_value(record.params, keep_nul=False)
        if params != record.params:
            changes["params"] = params
    if record.content is not None:
        content = _storable_value(record.content, keep_nul=True)
        if content != record.content:
            changes["content"] = content
    return replace(record, **changes) if changes else record


def format_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("audit record time must be timezone-aware")
    # YYYY-MM-DDTHH:MM:SS.ffffffZ (isoformat is several times faster than strftime).
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def json_safe(value: Any) -> Any:
    """Non-finite floats become strings (canonical JSON has no NaN or Infinity)."""
    return _finite(value)


def _finite(value: Any) -> Any:
    if isinstance(value, str | int | bool) or value is None:
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8: the same bytes for the same values."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def metadata_of(record: AuditRecord) -> dict[str, Any]:
    """The searchable, clear-text part of a record, as JSON values."""
    return {
        "record_id": record.record_id,
        "recorded_at": format_time(record.recorded_at),
        "event": record.event.value,
        "request_id": record.request_id,
        "http_method": record.http_method,
        "path": record.path,
        "status_code": record.status_code,
        "outcome": record.outcome.value,
        "subject": record.subject,
        "username": record.username,
        "team": record.team,
        "auth_method": record.auth_method,
        "key_id": record.key_id,
        "client_addr": record.client_addr,
        "model": record.model,
        "params": _finite(record.params) if record.params is not None else None,
        "denial_reason": record.denial_reason,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "latency_ms": record.latency_ms,
    }


def metadata_bytes(record: AuditRecord) -> bytes:
    """Canonical metadata: the associated data the content envelope is bound to."""
    return canonical_json(metadata_of(record))


def leaf_bytes(entry: SealedEntry) -> bytes:
    """The Merkle leaf input (RFC 6962 hashes it as SHA-256(0x00 || leaf))."""
    return leaf_bytes_of(
        entry.index, metadata_of(entry.record), entry.content_sha256, entry.content_key_id
    )


def leaf_bytes_of(
    index: int, meta: dict[str, Any], content_sha256: bytes | None, content_key_id: str | None
) -> bytes:
    """:func:`leaf_bytes` from metadata already in :func:`metadata_of` form (the
    verifier's fast path, which skips building records)."""
    content = None
    if content_sha256 is not None:
        content = {"key": content_key_id, "sha256": content_sha256.hex()}
    return canonical_json({"v": LEAF_VERSION, "index": index, "meta": meta, "content": content})
