"""The egress decision for one request to an external provider. Pure: no I/O, no clock.

Steps, in order; the first that refuses decides (rule names are stable, for audit
queries and the 403's message):

1. **Access** (``provider.teams``, ``provider.roles``): one of the caller's teams is
   allowed, and one of its roles if the provider names roles. Otherwise block.
2. **Declared label** (``label.invalid``): every label the caller declared (header
   :data:`LABEL_HEADER`, body field :data:`LABEL_FIELD`) must be a known level. Otherwise
   block: a label that cannot be read is not treated as absent.
3. **Classification**: the strictest of the declared labels, the caller's team default
   (``classification.teams``, strictest over its teams) and the content scan.
4. **Ceiling** (``provider.max_classification``):
   - at or below it: allow (``within_ceiling``);
   - a declared label or the team default above it (``ceiling.declared``,
     ``ceiling.team_default``): pseudonymising cannot lower those; refuse;
   - only content above it: if every finding above the ceiling comes from detectors in
     ``policy.pseudonymise`` (its absorbed detectors included), pseudonymise
     (``pseudonymise.content``) with ``threshold`` one level above the ceiling;
     otherwise refuse (``ceiling.content``) naming the detectors that cannot be.
5. **Refuse**: route to ``policy.fallback_model`` if set (verdict ``route``), else block.
   Access and label refusals always block.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from appliance.egress.findings import Finding
from appliance.egress.levels import Classification
from appliance.errors import PermissionDenied
from appliance.settings.egress import ProviderSettings
from appliance.settings.egress_policy import ClassificationSettings

__all__ = [
    "LABEL_FIELD",
    "LABEL_HEADER",
    "Caller",
    "EgressDecision",
    "Verdict",
    "decide",
    "declared_labels",
    "without_label",
]

LABEL_HEADER = "X-Data-Classification"
"""Request header with the caller's label: ``public``, ``internal``, ``confidential`` or
``restricted`` (any case)."""

LABEL_FIELD = "data_classification"
"""Top-level field of the JSON body with the same values; removed before the request is
relayed (:func:`without_label`)."""


class Verdict(enum.Enum):
    ALLOW = "allow"
    PSEUDONYMISE = "pseudonymise"
    ROUTE = "route"
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Caller:
    """Who asks: every team it acts for (``caller_teams``), its roles, and its own team
    (an API key's or the OIDC claim), preferred when several teams may use the provider."""

    teams: frozenset[str]
    roles: frozenset[str]
    team: str | None = None


def _frozen(counts: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType({name: counts[name] for name in sorted(counts) if counts[name]})


@dataclass(frozen=True, slots=True)
class EgressDecision:
    """The verdict and everything its audit record needs; never a scanned value.

    ``sources`` holds the level each source gave (``declared`` only when a label was
    declared); ``decided_by`` the sources at the resulting level. ``detectors`` counts
    every finding by detector; ``refused_detectors`` names those that could not be
    pseudonymised. ``threshold`` (pseudonymise): replace findings at this level and
    above. ``sent_classification``: the level of what leaves (None: nothing leaves).
    """

    provider: str
    team: str | None
    verdict: Verdict
    rule: str
    message: str
    classification: Classification
    sources: Mapping[str, Classification] = field(default_factory=dict)
    decided_by: tuple[str, ...] = ()
    detectors: Mapping[str, int] = field(default_factory=dict)
    refused_detectors: tuple[str, ...] = ()
    threshold: Classification | None = None
    fallback_model: str | None = None
    sent_classification: Classification | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", MappingProxyType(dict(self.sources)))
        object.__setattr__(self, "detectors", _frozen(self.detectors))

    @property
    def leaves(self) -> bool:
        """Whether the request goes to the provider (allow or pseudonymise)."""
        return self.verdict in (Verdict.ALLOW, Verdict.PSEUDONYMISE)

    def to_audit(self) -> dict[str, object]:
        """JSON-ready metadata for the ``egress.request`` record: names, levels and counts."""
        return {
            "provider": self.provider,
            "team": self.team,
            "verdict": self.verdict.value,
            "rule": self.rule,
            "classification": self.classification.label,
            "classification_sources": {k: v.label for k, v in self.sources.items()},
            "decided_by": list(self.decided_by),
            "detectors": dict(self.detectors),
            "refused_detectors": list(self.refused_detectors),
            "sent_classification": (
                None if self.sent_classification is None else self.sent_classification.label
            ),
            "fallback_model": self.fallback_model,
        }

    def as_error(self) -> PermissionDenied:
        """The 403 for a block verdict; its message names the rule, never a value."""
        return PermissionDenied(
            f"egress to {self.provider} refused by rule {self.rule}: {self.message}",
            code="egress_blocked",
        )


def declared_labels(headers: Mapping[str, str], body: Mapping[str, Any]) -> tuple[object, ...]:
    """The raw labels a request declares: the header (any case of its name), then the
    body field. Values are checked by :func:`decide`, not here."""
    found: list[object] = [
        value for name, value in headers.items() if name.lower() == LABEL_HEADER.lower()
    ]
    if LABEL_FIELD in body:
        found.append(body[LABEL_FIELD])
    return tuple(found)


def without_label(body: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``body`` without :data:`LABEL_FIELD`, to relay."""
    return {key: value for key, value in body.items() if key != LABEL_FIELD}


def _parse_labels(declared: Sequence[object]) -> Classification | str | None:
    """The strictest declared level, None when none was declared, or the text of the
    first unreadable label."""
    levels: list[Classification] = []
    for value in declared:
        try:
            if not isinstance(value, str):
                raise ValueError
            levels.append(Classification.parse(value))
        except ValueError:
            return repr(value)[:40]
    return max(levels) if levels else None


def _acting_team(provider: ProviderSettings, caller: Caller) -> str | None:
    allowed = caller.teams.intersection(provider.teams)
    if caller.team in allowed:
        return caller.team
    return min(allowed) if allowed else None


def decide(
    provider: ProviderSettings,
    caller: Caller,
    declared: Sequence[object],
    classification: ClassificationSettings,
    findings: Iterable[Finding],
) -> EgressDecision:
    """Steps 1-5 of the module docstring. ``declared``: :func:`declared_labels`;
    ``findings``: the scan of every text of the request (``scanner.scan(text).findings``
    for each of ``message_texts(messages)``)."""
    found = tuple(findings)
    counts = Counter(f.detector for f in found)
    team = _acting_team(provider, caller)

    def verdict(v: Verdict, rule: str, message: str, **kw: Any) -> EgressDecision:
        kw.setdefault("classification", Classification.PUBLIC)
        return EgressDecision(provider.name, team, v, rule, message, detectors=counts, **kw)

    # 1. Access.
    if team is None:
        return verdict(Verdict.BLOCK, "provider.teams", "none of your teams may use it")
    if provider.roles and not caller.roles.intersection(provider.roles):
        return verdict(Verdict.BLOCK, "provider.roles", "none of your roles may use it")
    # 2. Declared labels.
    label = _parse_labels(declared)
    if isinstance(label, str):
        expected = ", ".join(level.label for level in Classification)
        message = f"unknown data classification {label} (expected one of {expected})"
        return verdict(Verdict.BLOCK, "label.invalid", message)
    # 3. Classification: the strictest source wins.
    content = max((f.level for f in found), default=Classification.PUBLIC)
    sources: dict[str, Classification] = {}
    if label is not None:
        sources["declared"] = label
    sources["team_default"] = classification.team_default(caller.teams)
    sources["content"] = content
    level = max(sources.values())
    decided_by = tuple(name for name, value in sources.items() if value == level)
    common: dict[str, Any] = {
        "classification": level,
        "sources": sources,
        "decided_by": decided_by,
    }
    # 4. Ceiling.
    ceiling = provider.classification
    if level <= ceiling:
        message = f"{level.label} is within {ceiling.label}"
        return verdict(
            Verdict.ALLOW, "within_ceiling", message, sent_classification=level, **common
        )
    for source in ("declared", "team_default"):
        if sources.get(source, Classification.PUBLIC) > ceiling:
            what = "the declared label" if source == "declared" else "your team's default"
            message = (
                f"{what} {sources[source].label} is above {provider.name}'s {ceiling.label} ceiling"
            )
            return _refuse(provider, verdict, f"ceiling.{source}", message, (), common)
    above = [f for f in found if f.level > ceiling]
    policy = provider.policy
    refused = sorted(
        {n for f in above for n in (f.detector, *f.absorbed) if not policy.pseudonymisable(n)}
    )
    if refused:
        message = (
            f"the prompt holds {', '.join(refused)} above {provider.name}'s {ceiling.label} "
            "ceiling, which may not be pseudonymised"
        )
        return _refuse(provider, verdict, "ceiling.content", message, tuple(refused), common)
    kept = max(
        (f.level for f in found if f.level <= ceiling),
        default=Classification.PUBLIC,
    )
    sent = max(kept, sources["team_default"], sources.get("declared", Classification.PUBLIC))
    message = f"findings above {ceiling.label} are replaced by placeholders"
    return verdict(
        Verdict.PSEUDONYMISE,
        "pseudonymise.content",
        message,
        threshold=Classification(ceiling + 1),
        sent_classification=sent,
        **common,
    )


def _refuse(
    provider: ProviderSettings,
    verdict: Callable[..., EgressDecision],
    rule: str,
    message: str,
    refused: tuple[str, ...],
    common: dict[str, Any],
) -> EgressDecision:
    fallback = provider.policy.fallback_model
    if fallback is None:
        return verdict(Verdict.BLOCK, rule, message, refused_detectors=refused, **common)
    return verdict(
        Verdict.ROUTE,
        rule,
        f"{message}; routed to in-house {fallback}",
        refused_detectors=refused,
        fallback_model=fallback,
        **common,
    )
