"""Audit records in SQL (SQLite or PostgreSQL). Append and read; no update, no delete."""

from __future__ import annotations

from datetime import UTC
from typing import Any

import anyio.to_thread
from sqlalchemy import Engine, insert, select

from appliance.audit.records import AuditEvent, AuditRecord, Outcome
from appliance.db.tables import audit_records

__all__ = ["SqlAuditStore"]


def _row_values(record: AuditRecord) -> dict[str, Any]:
    if record.recorded_at.tzinfo is None:
        raise ValueError("audit record time must be timezone-aware")
    return {
        "record_id": record.record_id,
        # UTC on the way in: SQLite keeps no offset, so any other zone would shift.
        "recorded_at": record.recorded_at.astimezone(UTC),
        "event": record.event.value,
        "request_id": record.request_id,
        "subject": record.subject,
        "username": record.username,
        "auth_method": record.auth_method,
        "key_id": record.key_id,
        "client_addr": record.client_addr,
        "http_method": record.http_method,
        "path": record.path,
        "model": record.model,
        "params": record.params,
        "status_code": record.status_code,
        "outcome": record.outcome.value,
        "denial_reason": record.denial_reason,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "latency_ms": record.latency_ms,
    }


def _from_row(mapping: Any) -> AuditRecord:
    recorded_at = mapping["recorded_at"]
    if recorded_at.tzinfo is None:  # SQLite drops the zone; we only store UTC
        recorded_at = recorded_at.replace(tzinfo=UTC)
    else:  # PostgreSQL answers in the session's zone: same instant, shown as UTC
        recorded_at = recorded_at.astimezone(UTC)
    return AuditRecord(
        record_id=mapping["record_id"],
        recorded_at=recorded_at,
        event=AuditEvent(mapping["event"]),
        request_id=mapping["request_id"],
        http_method=mapping["http_method"],
        path=mapping["path"],
        status_code=mapping["status_code"],
        outcome=Outcome(mapping["outcome"]),
        subject=mapping["subject"],
        username=mapping["username"],
        auth_method=mapping["auth_method"],
        key_id=mapping["key_id"],
        client_addr=mapping["client_addr"],
        model=mapping["model"],
        params=mapping["params"],
        denial_reason=mapping["denial_reason"],
        prompt_tokens=mapping["prompt_tokens"],
        completion_tokens=mapping["completion_tokens"],
        latency_ms=mapping["latency_ms"],
    )


class SqlAuditStore:
    def __init__(self, engine: Engine):
        self._engine = engine

    def append_sync(self, record: AuditRecord) -> None:
        with self._engine.begin() as connection:
            connection.execute(insert(audit_records).values(**_row_values(record)))

    async def append(self, record: AuditRecord) -> None:
        # The commit returns only once the database has the record (WAL + FULL sync on
        # SQLite, commit on PostgreSQL); run it off the event loop.
        await anyio.to_thread.run_sync(self.append_sync, record)

    def by_request(self, request_id: str) -> list[AuditRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(audit_records)
                .where(audit_records.c.request_id == request_id)
                .order_by(audit_records.c.seq)
            )
            return [_from_row(row._mapping) for row in rows]

    def latest(self, limit: int = 100) -> list[AuditRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(audit_records).order_by(audit_records.c.seq.desc()).limit(limit)
            )
            return [_from_row(row._mapping) for row in rows]
