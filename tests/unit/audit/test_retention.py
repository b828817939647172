"""appliance/audit/retention.py: periods per kind, the floor and its override, cut-offs
and the schedule of what falls due when. Pure: no database, time passed in."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from appliance.audit.records import AuditEvent
from appliance.audit.retention import (
    KNOWN_KINDS,
    ContentDay,
    FloorBreach,
    RetentionPolicy,
    enforce_floor,
    override_params,
    retention_findings,
    schedule,
    schedule_document,
)
from appliance.config import load_settings
from appliance.errors import ConfigurationError

NOW = datetime(2026, 12, 6, 15, 30, tzinfo=UTC)
TODAY = NOW.date()


def policy(**values: object) -> RetentionPolicy:
    """The policy as appliance.yaml's audit.retention gives it (validation included)."""
    return RetentionPolicy.from_settings(load_settings(audit={"retention": values}).audit.retention)


def test_defaults_keep_a_year_above_a_six_month_floor() -> None:
    default = policy()
    assert (default.default_days, default.floor_days) == (365, 183)
    assert enforce_floor(default) == []
    assert default.period_for(AuditEvent.COMPLETION.value) == 365


def test_an_event_beats_its_family_which_beats_the_default() -> None:
    rules = policy(default_days=400, kinds={"inference": 200, "inference.completion": 730})
    assert rules.rule_for("inference.completion") == ("inference.completion", 730)
    assert rules.rule_for("inference.request") == ("inference", 200)
    assert rules.rule_for("auth.sign_in") == ("default", 400)
    # A tampered row's unknown event still gets a period: the default.
    assert rules.rule_for("forged.event") == ("default", 400)
    assert rules.cutoff("inference.request", NOW) == NOW - timedelta(days=200)


def test_the_deprecated_retention_days_becomes_the_default_period() -> None:
    old = RetentionPolicy.from_settings(
        load_settings(audit={"retention_days": 730}).audit.retention
    )
    assert old.default_days == 730
    with pytest.raises(ConfigurationError, match=r"retention_days \(deprecated\) and"):
        load_settings(audit={"retention_days": 730, "retention": {"default_days": 400}})


def test_a_period_below_the_floor_is_refused_naming_kind_period_and_floor() -> None:
    short = policy(kinds={"inference.completion": 30, "auth": 90})
    with pytest.raises(ConfigurationError) as refused:
        enforce_floor(short)
    message = refused.value.message
    assert "audit.retention.kinds.inference.completion = 30 days" in message
    assert "audit.retention.kinds.auth = 90 days" in message
    assert "below the floor of 183 days" in message and "override_reason" in message
    with pytest.raises(ConfigurationError, match="default_days = 100 days is below the floor"):
        enforce_floor(policy(default_days=100))
    # Exactly the floor is allowed; a raised floor is enforced too.
    assert enforce_floor(policy(default_days=183)) == []
    with pytest.raises(ConfigurationError, match="365 days is below the floor of 400"):
        enforce_floor(policy(floor_days=400))


def test_the_floor_itself_cannot_be_lowered() -> None:
    with pytest.raises(ConfigurationError, match="floor_days"):
        policy(floor_days=90)


def test_an_override_with_a_reason_allows_it_and_says_what() -> None:
    reason = "Hospital rulebook 7.3: chat content at most 30 days"
    short = policy(kinds={"inference": 30}, override_reason=reason)
    breaches = enforce_floor(short)
    assert breaches == [FloorBreach("inference", 30, 183)]
    assert override_params(short, breaches) == {
        "retention_override": True,
        "reason": reason,
        "floor_days": 183,
        "below_floor": {"inference": 30},
    }
    # A reason too short to say anything is not an override.
    with pytest.raises(ConfigurationError, match="override_reason"):
        policy(kinds={"inference": 30}, override_reason="because")


def test_an_unknown_kind_is_refused_naming_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown event kind 'inference\.answer'"):
        enforce_floor(policy(kinds={"inference.answer": 400}))
    assert {"inference", "inference.completion", "auth", "audit.retention"} <= KNOWN_KINDS


def test_doctor_findings() -> None:
    assert retention_findings(policy())[0][0] == "ok"
    ((level, message),) = retention_findings(policy(kinds={"inference": 30}))
    assert level == "fail" and "inference = 30 days" in message and "will not start" in message
    ((level, message),) = retention_findings(
        policy(kinds={"inference": 30}, override_reason="Works council agreement 2026-04")
    )
    assert level == "warn" and "overridden: Works council agreement 2026-04" in message


def test_schedule_counts_due_now_and_by_due_day() -> None:
    rules = policy(default_days=365, kinds={"inference.completion": 200})
    completion, request = AuditEvent.COMPLETION.value, AuditEvent.REQUEST.value
    days = [
        ContentDay(completion, TODAY - timedelta(days=300), 4),  # due 100 days ago
        ContentDay(completion, TODAY - timedelta(days=190), 2),  # due in 10 days
        ContentDay(completion, TODAY - timedelta(days=190), 1),  # same day, added up
        ContentDay(completion, TODAY - timedelta(days=10), 5),  # due in 190 days: later
        ContentDay(request, TODAY - timedelta(days=300), 3),  # due in 65 days
    ]
    plan = {kind.event: kind for kind in schedule(rules, days, now=NOW, horizon_days=90)}
    done = plan[completion]
    assert (done.days, done.rule, done.held, done.due_now, done.later) == (
        200, completion, 12, 4, 5,
    )  # fmt: skip
    assert done.upcoming == ((TODAY + timedelta(days=10), 3),)
    assert done.next_due == TODAY + timedelta(days=10)
    asked = plan[request]
    assert (asked.days, asked.rule, asked.due_now) == (365, "default", 0)
    assert asked.upcoming == ((TODAY + timedelta(days=65), 3),)


def test_the_cut_off_day_is_split_by_the_exact_count() -> None:
    rules = policy(default_days=200)
    cut_day = (NOW - timedelta(days=200)).date()
    days = [ContentDay("inference.request", cut_day, 5)]
    # The store counted 2 of the 5 as recorded before the cut-off moment.
    (kind,) = schedule(rules, days, now=NOW, due_now={"inference.request": 2})
    assert kind.due_now == 2 and kind.upcoming == ((TODAY, 3),)
    # Without the exact count, the whole cut-off day falls due today.
    (kind,) = schedule(rules, days, now=NOW)
    assert kind.due_now == 0 and kind.upcoming == ((TODAY, 5),)


def test_configured_kinds_without_content_are_listed_and_documented() -> None:
    rules = policy(kinds={"auth.sign_in": 400}, override_reason=None)
    kinds = schedule(rules, [], now=NOW, events=["auth.sign_in"])
    document = schedule_document(rules, kinds, now=NOW, horizon_days=90)
    assert document["kinds"] == [{
        "event": "auth.sign_in", "days": 400, "rule": "auth.sign_in", "held": 0,
        "due_now": 0, "next_due": None, "upcoming": [], "later": 0,
    }]  # fmt: skip
    assert document["floor_days"] == 183 and document["below_floor"] == {}
    assert document["configured"] == {"auth.sign_in": 400}
    assert isinstance(date.fromisoformat(document["generated_at"][:10]), date)
