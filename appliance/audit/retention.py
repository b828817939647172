"""Retention policy: how long each event kind's sealed content is kept, the floor no
period may go below, and what falls due when.

Pure: values in, values out; time is a parameter. The store side (counting content
by day, dropping envelopes) is appliance.audit.retention_store.

A period applies to the content envelope only. Metadata, leaves and proofs stay for
the life of the log, so `appliance audit verify` stays green after retention ran.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from appliance.audit.records import AuditEvent
from appliance.errors import ConfigurationError
from appliance.settings.retention import AuditRetentionSettings

__all__ = [
    "KNOWN_KINDS",
    "ContentDay",
    "FloorBreach",
    "KindSchedule",
    "RetentionPolicy",
    "enforce_floor",
    "override_params",
    "retention_findings",
    "schedule",
    "schedule_document",
]

DEFAULT_KIND = "default"

# What a period may be set for: an event (inference.completion) or its family, the
# part before the first dot (inference, request, audit, auth, admin).
KNOWN_KINDS = frozenset(
    {event.value for event in AuditEvent} | {event.value.split(".")[0] for event in AuditEvent}
)


@dataclass(frozen=True)
class FloorBreach:
    """A configured period shorter than the floor."""

    kind: str  # "default" or an event kind as configured
    days: int
    floor_days: int

    def describe(self) -> str:
        setting = (
            "audit.retention.default_days"
            if self.kind == DEFAULT_KIND
            else f"audit.retention.kinds.{self.kind}"
        )
        return f"{setting} = {self.days} days is below the floor of {self.floor_days} days"


@dataclass(frozen=True)
class RetentionPolicy:
    default_days: int
    floor_days: int
    kinds: tuple[tuple[str, int], ...] = ()  # (event or family, days), as configured
    override_reason: str | None = None

    @classmethod
    def from_settings(cls, section: AuditRetentionSettings) -> RetentionPolicy:
        return cls(
            default_days=section.default_days,
            floor_days=section.floor_days,
            kinds=tuple(sorted(section.kinds.items())),
            override_reason=section.override_reason,
        )

    def uniform(self, days: int) -> RetentionPolicy:
        """The same policy with one period for every kind (``retention apply --days``)."""
        return RetentionPolicy(days, self.floor_days, (), self.override_reason)

    def unknown_kinds(self) -> list[str]:
        return [kind for kind, _ in self.kinds if kind not in KNOWN_KINDS]

    def rule_for(self, event: str) -> tuple[str, int]:
        """(where the period comes from, days) for one event: its own entry, else its
        family's, else the default. Unknown events (a tampered row) get the default."""
        configured = dict(self.kinds)
        for key in (event, event.split(".")[0]):
            if key in configured:
                return key, configured[key]
        return DEFAULT_KIND, self.default_days

    def period_for(self, event: str) -> int:
        return self.rule_for(event)[1]

    def cutoff(self, event: str, now: datetime) -> datetime:
        """Content of ``event`` recorded before this moment is past its retention."""
        return now - timedelta(days=self.period_for(event))

    def breaches(self) -> list[FloorBreach]:
        """Every configured period below the floor, the default first."""
        found = []
        if self.default_days < self.floor_days:
            found.append(FloorBreach(DEFAULT_KIND, self.default_days, self.floor_days))
        found += [
            FloorBreach(kind, days, self.floor_days)
            for kind, days in self.kinds
            if days < self.floor_days
        ]
        return found


def enforce_floor(policy: RetentionPolicy) -> list[FloorBreach]:
    """Raise ConfigurationError on an unknown kind, or on a period below the floor
    unless an override reason is stated; returns the breaches an override allows."""
    unknown = policy.unknown_kinds()
    if unknown:
        raise ConfigurationError(
            f"audit.retention.kinds: unknown event kind {unknown[0]!r}; known: "
            + ", ".join(sorted(KNOWN_KINDS))
        )
    breaches = policy.breaches()
    if breaches and policy.override_reason is None:
        raise ConfigurationError(
            "; ".join(breach.describe() for breach in breaches)
            + " (a regulator's minimum, e.g. six months under the EU AI Act). Lengthen "
            "the period, or state why it may be shorter in audit.retention.override_reason"
        )
    return breaches


def override_params(policy: RetentionPolicy, breaches: Iterable[FloorBreach]) -> dict[str, Any]:
    """The params of the audit record a gateway writes when it starts on an override."""
    return {
        "retention_override": True,
        "reason": policy.override_reason,
        "floor_days": policy.floor_days,
        "below_floor": {breach.kind: breach.days for breach in breaches},
    }


def retention_findings(policy: RetentionPolicy) -> list[tuple[str, str]]:
    """(level, message) lines for `appliance doctor`."""
    try:
        breaches = enforce_floor(policy)
    except ConfigurationError as refused:
        return [("fail", f"audit retention: {refused.message}; the gateway will not start")]
    periods = ", ".join(f"{kind} {days} d" for kind, days in policy.kinds)
    summary = f"audit retention: default {policy.default_days} d" + (
        f", {periods}" if periods else ""
    )
    if breaches:
        below = "; ".join(breach.describe() for breach in breaches)
        return [("warn", f"{summary}; {below}, overridden: {policy.override_reason}")]
    return [("ok", f"{summary}; floor {policy.floor_days} d")]


@dataclass(frozen=True)
class ContentDay:
    """How many records of one event, recorded on one UTC day, still hold content."""

    event: str
    day: date
    count: int


@dataclass(frozen=True)
class KindSchedule:
    """What retention does to one event's content: ``due_now`` records are past their
    period (the next `retention apply` drops them); ``upcoming`` are (UTC day, count)
    of the ones that fall due within the horizon, ``later`` the rest."""

    event: str
    days: int
    rule: str  # the configured kind the period comes from, or "default"
    held: int
    due_now: int
    upcoming: tuple[tuple[date, int], ...]
    later: int

    @property
    def next_due(self) -> date | None:
        return self.upcoming[0][0] if self.upcoming else None


def schedule(
    policy: RetentionPolicy,
    content_days: Iterable[ContentDay],
    *,
    now: datetime,
    due_now: Mapping[str, int] | None = None,
    horizon_days: int = 90,
    events: Iterable[str] = (),
) -> list[KindSchedule]:
    """Per event, sorted by name: its period and when its content falls due. Content
    recorded on UTC day D with period P falls due during day D + P. ``due_now`` is the
    exact count per event past its cut-off (the store counts it to the microsecond,
    as `retention apply` compares); without it, whole days before the cut-off day
    count. The cut-off day's other records fall due today."""
    by_event: dict[str, dict[date, int]] = defaultdict(dict)
    for item in content_days:
        days = by_event[item.event]
        days[item.day] = days.get(item.day, 0) + item.count
    for event in events:  # kinds to show even while they hold no content
        by_event.setdefault(event, {})
    today = now.date()
    result = []
    for event in sorted(by_event):
        rule, period = policy.rule_for(event)
        cut_day = policy.cutoff(event, now).date()
        upcoming: dict[date, int] = {}
        later = 0
        before_cut = on_cut = 0
        for day, count in by_event[event].items():
            if day < cut_day:
                before_cut += count
            elif day == cut_day:
                on_cut += count
            elif (day + timedelta(days=period) - today).days <= horizon_days:
                due = day + timedelta(days=period)
                upcoming[due] = upcoming.get(due, 0) + count
            else:
                later += count
        past = before_cut if due_now is None else due_now.get(event, 0)
        if before_cut + on_cut - past > 0:
            upcoming[today] = upcoming.get(today, 0) + before_cut + on_cut - past
        result.append(
            KindSchedule(
                event=event,
                days=period,
                rule=rule,
                held=sum(by_event[event].values()),
                due_now=past,
                upcoming=tuple(sorted(upcoming.items())),
                later=later,
            )
        )
    return result


def schedule_document(
    policy: RetentionPolicy, kinds: list[KindSchedule], *, now: datetime, horizon_days: int
) -> dict[str, Any]:
    """The plan as JSON values (the CLI's --json and the console's endpoint)."""
    return {
        "generated_at": now.isoformat(),
        "default_days": policy.default_days,
        "floor_days": policy.floor_days,
        "override_reason": policy.override_reason,
        "below_floor": {b.kind: b.days for b in policy.breaches()},
        "configured": dict(policy.kinds),
        "horizon_days": horizon_days,
        "kinds": [
            {
                "event": kind.event,
                "days": kind.days,
                "rule": kind.rule,
                "held": kind.held,
                "due_now": kind.due_now,
                "next_due": kind.next_due.isoformat() if kind.next_due else None,
                "upcoming": [{"date": d.isoformat(), "count": n} for d, n in kind.upcoming],
                "later": kind.later,
            }
            for kind in kinds
        ],
    }
