"""Retention against the store: count what content the log holds and when it falls
due, drop the envelopes past their kind's period, and the record a gateway writes
when it starts on a floor override. The policy itself is appliance.audit.retention.

Only rows of ``audit_contents`` are ever deleted, never rows of ``audit_log``: leaves,
checkpoints and proofs stay valid, and `audit verify` counts the dropped contents.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, delete, func, select

from appliance.audit.access import Actor, record_act
from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEvent, AuditRecord, Outcome
from appliance.audit.retention import (
    ContentDay,
    FloorBreach,
    KindSchedule,
    RetentionPolicy,
    override_params,
    schedule,
)
from appliance.db.tables import audit_contents, audit_log

__all__ = [
    "apply_retention",
    "content_days",
    "due_counts",
    "override_record",
    "retention_plan",
]


def _held(connection: Connection) -> list[str]:
    """The events whose records still hold content."""
    query = (
        select(audit_log.c.event)
        .join(audit_contents, audit_contents.c.idx == audit_log.c.idx)
        .distinct()
    )
    return sorted(str(event) for (event,) in connection.execute(query))


def _utc_day(connection: Connection) -> ColumnElement[Any]:
    # SQLite keeps UTC text, so date() is already the UTC day; PostgreSQL's date() of
    # a timestamptz takes the session's zone, so convert to UTC first.
    if connection.dialect.name == "postgresql":
        return func.date(func.timezone("UTC", audit_log.c.recorded_at))
    return func.date(audit_log.c.recorded_at)


def _as_date(value: Any) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def content_days(engine: Engine) -> list[ContentDay]:
    """How many records still hold content, per event and UTC day recorded."""
    with engine.connect() as connection:
        day = _utc_day(connection)
        query = (
            select(audit_log.c.event, day, func.count())
            .join(audit_contents, audit_contents.c.idx == audit_log.c.idx)
            .group_by(audit_log.c.event, day)
        )
        return [
            ContentDay(str(event), _as_date(when), int(count))
            for event, when, count in connection.execute(query)
        ]


def _past(event: str, cutoff: datetime) -> Any:
    return select(audit_log.c.idx).where(
        audit_log.c.event == event, audit_log.c.recorded_at < cutoff.astimezone(UTC)
    )


def due_counts(engine: Engine, policy: RetentionPolicy, now: datetime) -> dict[str, int]:
    """Per event, how many records hold content past its period at ``now``: exactly
    what `retention apply` would drop."""
    with engine.connect() as connection:
        counts = {}
        for event in _held(connection):
            past = _past(event, policy.cutoff(event, now))
            counted = connection.execute(
                select(func.count()).where(audit_contents.c.idx.in_(past))
            ).scalar()
            counts[event] = int(counted or 0)
    return counts


def retention_plan(
    engine: Engine, policy: RetentionPolicy, now: datetime, *, horizon_days: int = 90
) -> list[KindSchedule]:
    """Every event with content or a configured period: what is due now, and when
    the rest falls due."""
    configured = [kind for kind, _ in policy.kinds if "." in kind]
    return schedule(
        policy,
        content_days(engine),
        now=now,
        due_now=due_counts(engine, policy, now),
        horizon_days=horizon_days,
        events=configured,
    )


def apply_retention(
    log: AuditLog, policy: RetentionPolicy, *, actor: Actor, path: str = "audit retention apply"
) -> dict[str, int]:
    """Drop the content envelope of every record past its event's period; leaves
    (and so every proof) stay. The act, with each event's cut-off, is recorded first.
    Returns the envelopes dropped per event (events with none left out)."""
    now = log.now()
    with log.store.engine.connect() as connection:
        events = _held(connection)
    cutoffs = {event: policy.cutoff(event, now).astimezone(UTC) for event in events}
    record_act(
        log, actor, AuditEvent.AUDIT_RETENTION,
        {
            "default_days": policy.default_days,
            "kinds": dict(policy.kinds),
            "older_than": {event: cut.isoformat() for event, cut in cutoffs.items()},
        },
        path=path,
    )  # fmt: skip
    dropped: dict[str, int] = {}
    with log.store.engine.begin() as connection:
        for event, cutoff in cutoffs.items():
            result = connection.execute(
                delete(audit_contents).where(audit_contents.c.idx.in_(_past(event, cutoff)))
            )
            if result.rowcount:
                dropped[event] = int(result.rowcount)
    return dropped


def override_record(
    policy: RetentionPolicy, breaches: Iterable[FloorBreach], *, now: datetime
) -> AuditRecord:
    """The record a gateway writes once at start when it runs below the floor on an
    override: who allowed it is the configuration, so the reason is what it states."""
    return AuditRecord(
        record_id=str(uuid.uuid4()),
        recorded_at=now,
        event=AuditEvent.AUDIT_RETENTION,
        request_id=f"start-{uuid.uuid4().hex[:16]}",
        http_method="START",
        path="gateway start: audit.retention.override_reason",
        status_code=0,
        outcome=Outcome.OK,
        subject="system:gateway",
        username="gateway",
        auth_method="system",
        params=override_params(policy, breaches),
    )
