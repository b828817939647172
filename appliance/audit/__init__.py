"""The tamper-evident, encrypted audit log.

Pure parts: :mod:`~appliance.audit.merkle` (RFC 6962 tree and proofs),
:mod:`~appliance.audit.checkpoint` (C2SP signed checkpoints),
:mod:`~appliance.audit.envelope` (AES-256-GCM envelopes),
:mod:`~appliance.audit.records` (canonical leaf bytes). I/O at the edges:
:mod:`~appliance.audit.store` (SQL), :mod:`~appliance.audit.log` (sealing writer),
:mod:`~appliance.audit.writer` (group commit), :mod:`~appliance.audit.verify`.
The gateway writes through the :class:`AuditSink` interface.
"""

from __future__ import annotations

from appliance.audit.records import AuditEvent, AuditRecord, Outcome, SealedEntry
from appliance.audit.sink import AuditSink, MemoryAuditSink
from appliance.audit.store import SearchFilter, SqlAuditStore, StoredCheckpoint, StoredEntry

__all__ = [
    "AuditEvent",
    "AuditRecord",
    "AuditSink",
    "MemoryAuditSink",
    "Outcome",
    "SealedEntry",
    "SearchFilter",
    "SqlAuditStore",
    "StoredCheckpoint",
    "StoredEntry",
]
