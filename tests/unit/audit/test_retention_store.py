"""appliance/audit/retention_store.py on SQLite and PostgreSQL: content counted per kind
and UTC day, dropped per kind past its period, leaves kept (verify stays green)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine

from appliance.audit.access import Actor, reveal
from appliance.audit.checkpoint import NoteSigner
from appliance.audit.log import AuditLog
from appliance.audit.records import AuditEvent
from appliance.audit.retention import RetentionPolicy
from appliance.audit.retention_store import (
    apply_retention,
    content_days,
    due_counts,
    override_record,
    retention_plan,
)
from appliance.audit.verify import verify_log
from tests.support.audit import ORIGIN, StepClock, build_log, content_record

AUDITOR = Actor(subject="cli:carol", username="carol")
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
REQUEST, COMPLETION = AuditEvent.REQUEST, AuditEvent.COMPLETION
POLICY = RetentionPolicy(
    default_days=365, floor_days=183, kinds=(("inference.request", 200),), override_reason=None
)


def seeded(engine: Engine, signer: NoteSigner) -> tuple[AuditLog, dict[str, str]]:
    """Requests and completions 300 and 10 days old (requests keep 200 days, completions
    the default 365), and a request with no content."""
    log = build_log(engine, signer=signer, clock=StepClock(NOW))
    old, new = NOW - timedelta(days=300), NOW - timedelta(days=10)
    records = {
        "old_request": content_record(1, event=REQUEST, recorded_at=old),
        "old_completion": content_record(2, event=COMPLETION, recorded_at=old),
        "new_request": content_record(3, event=REQUEST, recorded_at=new),
        "new_completion": content_record(4, event=COMPLETION, recorded_at=new),
        "empty_request": content_record(5, event=REQUEST, recorded_at=old, content=None),
    }
    log.append_batch(list(records.values()))
    return log, {name: record.record_id for name, record in records.items()}


def status(log: AuditLog, record_id: str) -> str:
    return reveal(log, record_id, actor=AUDITOR, reason="check retention").status


def test_content_is_counted_per_kind_and_utc_day(
    migrated_engine: Engine, signer: NoteSigner
) -> None:
    seeded(migrated_engine, signer)
    counted = {(d.event, d.day, d.count) for d in content_days(migrated_engine)}
    old_day, new_day = (NOW - timedelta(days=300)).date(), (NOW - timedelta(days=10)).date()
    assert counted == {
        (REQUEST.value, old_day, 1), (COMPLETION.value, old_day, 1),
        (REQUEST.value, new_day, 1), (COMPLETION.value, new_day, 1),
    }  # fmt: skip
    assert due_counts(migrated_engine, POLICY, NOW) == {REQUEST.value: 1, COMPLETION.value: 0}


def test_apply_drops_each_kind_past_its_period_and_verify_stays_green(
    migrated_engine: Engine, signer: NoteSigner
) -> None:
    log, ids = seeded(migrated_engine, signer)
    log.checkpoint()
    plan = {k.event: k for k in retention_plan(migrated_engine, POLICY, NOW)}
    assert plan[REQUEST.value].due_now == 1
    assert plan[COMPLETION.value].upcoming == (((NOW - timedelta(days=300)).date()
                                                + timedelta(days=365), 1),)  # fmt: skip

    dropped = apply_retention(log, POLICY, actor=AUDITOR)

    assert dropped == {REQUEST.value: 1}
    assert status(log, ids["old_request"]) == "dropped"
    # The completion of the same age keeps the default 365 days: still readable.
    assert status(log, ids["old_completion"]) == "present"
    assert status(log, ids["new_request"]) == "present"
    assert status(log, ids["empty_request"]) == "none"
    # The act was recorded before it happened, with each kind's cut-off.
    (act,) = [r for r in log.store.latest() if r.event is AuditEvent.AUDIT_RETENTION]
    assert act.username == "carol" and act.path == "audit retention apply"
    assert act.params is not None and act.params["kinds"] == {"inference.request": 200}
    assert set(act.params["older_than"]) == {REQUEST.value, COMPLETION.value}
    log.checkpoint()
    report = verify_log(log.store, signer.verifier(), origin=ORIGIN)
    assert report.contents_dropped == 1 and report.uncovered == 0
    # Nothing more is due; a second run drops nothing.
    assert due_counts(migrated_engine, POLICY, log.now())[REQUEST.value] == 0
    assert apply_retention(log, POLICY, actor=AUDITOR) == {}


def test_a_uniform_period_drops_every_kind(migrated_engine: Engine, signer: NoteSigner) -> None:
    log, ids = seeded(migrated_engine, signer)
    dropped = apply_retention(log, POLICY.uniform(183), actor=AUDITOR)
    assert dropped == {REQUEST.value: 1, COMPLETION.value: 1}
    assert status(log, ids["old_completion"]) == "dropped"
    assert status(log, ids["new_completion"]) == "present"


def test_the_override_record_states_the_reason(migrated_engine: Engine, signer: NoteSigner) -> None:
    reason = "Hospital rulebook 7.3: chat content at most 30 days"
    short = RetentionPolicy(365, 183, (("inference", 30),), reason)
    record = override_record(short, short.breaches(), now=NOW)
    log = build_log(migrated_engine, signer=signer)
    log.append(record)  # storable as is: the columns' widths hold it
    (stored,) = log.store.latest()
    assert stored.event is AuditEvent.AUDIT_RETENTION and stored.http_method == "START"
    assert stored.params == {
        "retention_override": True, "reason": reason, "floor_days": 183,
        "below_floor": {"inference": 30},
    }  # fmt: skip
