"""What left the premises (issue #17): external calls summarised per team and provider
from audit records' clear-text metadata, for the console's egress view and the
regulator's export. Pure: the caller reads the records; content is never looked at.

An external call is any record whose ``params["egress"]`` holds the gateway's egress
decision (``EgressDecision.to_audit()``). One call leaves one *decision record*, which
is counted, and perhaps a completion, which carries tokens and cost:

- ``request.denied`` 403, verdict ``block``: blocked;
- ``request.denied`` 429 with ``egress.budget == "exceeded"``: refused by the budget;
- ``inference.request`` with verdict ``route``: answered in-house by the fallback model;
- ``egress.request`` with verdict ``allow`` or ``pseudonymise``: data left (written
  before anything was sent); its ``inference.completion`` holds the tokens and
  ``egress.cost`` in ``egress.currency``.

Detector hits are counted from decision records only, so a call that left is not
counted twice (its completion repeats the decision).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from appliance.audit.records import AuditEvent, AuditRecord

__all__ = [
    "EGRESS_EVENTS",
    "LEFT_VERDICTS",
    "NO_PROVIDER",
    "NO_TEAM",
    "EgressLine",
    "EgressSummary",
    "egress_of",
    "is_external",
    "line_key",
    "summarise",
]

NO_TEAM = "(no team)"
NO_PROVIDER = "(unknown provider)"
# The verdicts under which data went to the provider.
LEFT_VERDICTS = frozenset({"allow", "pseudonymise"})
# The events an external call can leave: a search for them needs no other.
EGRESS_EVENTS = (
    AuditEvent.DENIED.value,
    AuditEvent.EGRESS_REQUEST.value,
    AuditEvent.REQUEST.value,
    AuditEvent.COMPLETION.value,
)


def egress_of(record: AuditRecord) -> Mapping[str, Any] | None:
    """The record's egress decision (``params["egress"]``), or None for an ordinary
    in-house record."""
    value = (record.params or {}).get("egress")
    return value if isinstance(value, Mapping) else None


def is_external(record: AuditRecord) -> bool:
    """Whether the record belongs to a request for an external model."""
    return egress_of(record) is not None


def line_key(record: AuditRecord) -> tuple[str, str]:
    """(team, provider) of an external record: the caller's team as recorded, else
    the team the decision names."""
    egress = egress_of(record) or {}
    team = record.team or egress.get("team")
    provider = egress.get("provider")
    return (
        team if isinstance(team, str) and team else NO_TEAM,
        provider if isinstance(provider, str) and provider else NO_PROVIDER,
    )


@dataclass
class EgressLine:
    """What one team sent to one provider (or, as totals, everyone to everyone).
    Mutable, unlike the package's value types: it is the accumulator
    :func:`summarise` adds records to, and never leaves a summary changed."""

    team: str
    provider: str
    left: int = 0  # calls whose data went to the provider (allow + pseudonymise)
    pseudonymised: int = 0  # of those, sent pseudonymised
    routed: int = 0  # answered in-house by the fallback model instead
    blocked: int = 0
    budget_refused: int = 0
    other_refused: int = 0  # refused for another reason (rate limit, validation)
    prompt_tokens: int = 0  # of calls that left
    completion_tokens: int = 0
    cost: dict[str, Decimal] = field(default_factory=dict)  # currency -> amount
    unpriced: int = 0  # completions that left without a readable cost
    detectors: dict[str, int] = field(default_factory=dict)  # detector -> hits

    def add(self, record: AuditRecord, egress: Mapping[str, Any]) -> None:
        verdict = egress.get("verdict")
        event = record.event
        decision = True
        if event == AuditEvent.DENIED:
            if egress.get("budget") == "exceeded":
                self.budget_refused += 1
            elif verdict == "block":
                self.blocked += 1
            else:
                self.other_refused += 1
        elif event == AuditEvent.EGRESS_REQUEST and verdict in LEFT_VERDICTS:
            self.left += 1
            self.pseudonymised += verdict == "pseudonymise"
        elif event == AuditEvent.REQUEST and verdict == "route":
            self.routed += 1
        else:
            decision = False
        if event == AuditEvent.COMPLETION and verdict in LEFT_VERDICTS:
            self._add_usage(record, egress)
        if decision:
            for name, count in (egress.get("detectors") or {}).items():
                if isinstance(count, int) and count > 0:
                    self.detectors[str(name)] = self.detectors.get(str(name), 0) + count

    def _add_usage(self, record: AuditRecord, egress: Mapping[str, Any]) -> None:
        self.prompt_tokens += record.prompt_tokens or 0
        self.completion_tokens += record.completion_tokens or 0
        cost, currency = egress.get("cost"), egress.get("currency")
        try:
            # A decimal string: floats would round a regulator's sums.
            amount = Decimal(cost) if isinstance(cost, str) else None
        except InvalidOperation:
            amount = None
        if amount is None or not amount.is_finite() or not isinstance(currency, str):
            self.unpriced += 1
            return
        self.cost[currency] = self.cost.get(currency, Decimal(0)) + amount

    def merge(self, other: EgressLine) -> None:
        for name in (
            "left", "pseudonymised", "routed", "blocked", "budget_refused",
            "other_refused", "prompt_tokens", "completion_tokens", "unpriced",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for currency, amount in other.cost.items():
            self.cost[currency] = self.cost.get(currency, Decimal(0)) + amount
        for name, count in other.detectors.items():
            self.detectors[name] = self.detectors.get(name, 0) + count

    def as_dict(self) -> dict[str, Any]:
        """JSON values; amounts as decimal strings."""
        return {
            "team": self.team,
            "provider": self.provider,
            "left": self.left,
            "pseudonymised": self.pseudonymised,
            "routed": self.routed,
            "blocked": self.blocked,
            "budget_refused": self.budget_refused,
            "other_refused": self.other_refused,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": {currency: str(self.cost[currency]) for currency in sorted(self.cost)},
            "unpriced": self.unpriced,
            "detectors": dict(sorted(self.detectors.items())),
        }


@dataclass(frozen=True)
class EgressSummary:
    """Lines per (team, provider), sorted, their totals, and how many records fed them."""

    lines: tuple[EgressLine, ...]
    totals: EgressLine
    records: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "lines": [line.as_dict() for line in self.lines],
            "totals": self.totals.as_dict(),
        }


def summarise(records: Iterable[AuditRecord]) -> EgressSummary:
    """The summary of the external calls among ``records`` (ordinary records are
    skipped, so a caller may pass a whole time range)."""
    lines: dict[tuple[str, str], EgressLine] = {}
    count = 0
    for record in records:
        egress = egress_of(record)
        if egress is None:
            continue
        count += 1
        key = line_key(record)
        if key not in lines:
            lines[key] = EgressLine(*key)
        lines[key].add(record, egress)
    totals = EgressLine(team="(all)", provider="(all)")
    ordered = tuple(lines[key] for key in sorted(lines))
    for line in ordered:
        totals.merge(line)
    return EgressSummary(lines=ordered, totals=totals, records=count)
