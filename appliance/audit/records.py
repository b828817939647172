"""What an audit record says. Plain values; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

__all__ = ["AuditEvent", "AuditRecord", "Outcome"]


class AuditEvent(StrEnum):
    # Written before the request reaches an engine; if it cannot be written the request
    # is refused with 503 (fail closed).
    REQUEST = "inference.request"
    # Written when the answer is complete, failed or abandoned.
    COMPLETION = "inference.completion"
    # A request refused before any engine saw it (auth, policy, validation).
    DENIED = "request.denied"


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
