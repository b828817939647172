"""Audit records and where they go. The audit-log issue makes the store tamper-evident
and encrypted behind the same :class:`AuditSink` interface."""

from __future__ import annotations

from appliance.audit.records import AuditEvent, AuditRecord, Outcome
from appliance.audit.sink import AuditSink, MemoryAuditSink
from appliance.audit.store import SqlAuditStore

__all__ = [
    "AuditEvent",
    "AuditRecord",
    "AuditSink",
    "MemoryAuditSink",
    "Outcome",
    "SqlAuditStore",
]
