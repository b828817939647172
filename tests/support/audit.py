"""Building audit logs and records for tests: a fresh signing key and master key each."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine

from appliance.audit.checkpoint import NoteSigner
from appliance.audit.keyring import SubjectKeyRing
from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEvent, AuditRecord, Outcome
from appliance.keys.provider import FileKeyProvider

ORIGIN = "test.example/audit"
T0 = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


class StepClock:
    """A clock that moves one second per reading (records get distinct times)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def make_record(
    request_id: str = "req-1",
    *,
    at: datetime = T0,
    event: AuditEvent = AuditEvent.REQUEST,
    **fields: Any,
) -> AuditRecord:
    values: dict[str, Any] = {
        "record_id": str(uuid.uuid4()),
        "recorded_at": at,
        "event": event,
        "request_id": request_id,
        "http_method": "POST",
        "path": "/v1/chat/completions",
        "status_code": 200,
        "outcome": Outcome.ACCEPTED,
    }
    values.update(fields)
    return AuditRecord(**values)


def content_record(index: int, subject: str = "apikey:alice", **fields: Any) -> AuditRecord:
    at = fields.pop("recorded_at", T0 + timedelta(seconds=index))
    values: dict[str, Any] = {
        "subject": subject,
        "username": subject.split(":")[-1],
        "model": "smollm2-135m-instruct",
        "params": {"temperature": 0.2, "max_tokens": 16},
        "content": {"messages": [{"role": "user", "content": f"question {index}"}]},
    }
    return make_record(f"req-{index}", at=at, **{**values, **fields})


def build_log(
    engine: Engine,
    *,
    signer: NoteSigner | None = None,
    master_key: bytes | None = None,
    clock: Callable[[], datetime] | None = None,
    **options: Any,
) -> AuditLog:
    log = AuditLog(
        engine,
        keyring=SubjectKeyRing(engine, FileKeyProvider(master_key or os.urandom(32))),
        signer=signer or NoteSigner.generate(ORIGIN),
        origin=ORIGIN,
        clock=clock or StepClock(),
        **options,
    )
    log.open()
    return log
