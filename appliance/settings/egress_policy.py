"""What may leave for an external provider: each provider's ``policy`` (which detectors
may be pseudonymised, where a refused prompt goes instead) and the ``classification:``
key (each team's default classification). Read by :mod:`appliance.egress.decision`.

Fail closed: a detector not listed in ``policy.pseudonymise`` blocks when its finding is
above the provider's ceiling; without ``policy.fallback_model`` a refused prompt is
blocked (403), not routed; a team not listed gets ``classification.default``.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from appliance.egress.defaults import DEFAULT_LEVELS
from appliance.egress.levels import Classification
from appliance.settings.base import Section

__all__ = [
    "DEFAULT_PSEUDONYMISABLE",
    "ClassificationSettings",
    "ContentScanSettings",
    "ProviderPolicy",
    "SiteDictionarySettings",
]

Level = Literal["public", "internal", "confidential", "restricted"]

# Personal and financial identifiers: a placeholder carries no meaning of its own.
# Secrets, keys and site dictionaries are not here: a prompt holding one above the
# provider's ceiling does not leave, pseudonymised or not (add "dictionary.*" to allow).
DEFAULT_PSEUDONYMISABLE = (
    "email",
    "phone",
    "iban",
    "payment_card",
    "de_steuer_id",
    "fr_nir",
    "gb_nino",
    "us_ssn",
    "nl_bsn",
)


class ProviderPolicy(Section):
    """How a prompt above the provider's ``max_classification`` is handled."""

    pseudonymise: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PSEUDONYMISABLE),
        description="Detectors (names or globs: 'dictionary.*') whose findings above the "
        "ceiling are replaced by placeholders and the prompt sent; a finding of any other "
        "detector above the ceiling refuses the prompt",
    )
    fallback_model: str | None = Field(
        default=None,
        min_length=1,
        description="In-house model a refused prompt is routed to instead; null: block (403)",
    )

    @field_validator("pseudonymise")
    @classmethod
    def _detectors(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if pattern.startswith("dictionary."):
                continue
            if not any(fnmatchcase(name, pattern) for name in DEFAULT_LEVELS):
                known = ", ".join(sorted(DEFAULT_LEVELS))
                raise ValueError(
                    f"policy.pseudonymise: {pattern!r} matches no detector "
                    f"(built-in: {known}; site dictionaries: dictionary.<name>)"
                )
        return value

    @field_validator("fallback_model")
    @classmethod
    def _in_house(cls, value: str | None) -> str | None:
        if value is not None and "@" in value:
            raise ValueError(
                f"policy.fallback_model: {value!r} looks external; name an in-house model"
            )
        return value

    def pseudonymisable(self, detector: str) -> bool:
        return any(fnmatchcase(detector, pattern) for pattern in self.pseudonymise)


class SiteDictionarySettings(Section):
    """A file of site terms (code names, customer names): one per line, ``#`` comments."""

    file: Path = Field(description="UTF-8 file, one term per line (absolute path)")
    name: str | None = Field(
        default=None,
        pattern=r"^dictionary\.[a-z0-9_]{1,40}$",
        description="Detector name; default dictionary.<file stem>",
    )
    level: Level = Field(default="confidential", description="Classification of a match")
    label: str = Field(
        default="TERM", pattern=r"^[A-Z0-9_]{1,32}$", description="Placeholder label"
    )

    @field_validator("file")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        if not value.is_absolute():
            raise ValueError(f"file: must be an absolute path, got {str(value)!r}")
        return value


class ContentScanSettings(Section):
    """``classification.scan:``: what the content scan looks for in prompts bound for
    an external provider (docs/egress.md "Detectors"). Defaults: every built-in
    detector, national identifiers of every built-in country, default levels."""

    detectors: list[str] | None = Field(
        default=None, description="Built-in detectors to run; null: all of them"
    )
    countries: list[str] | None = Field(
        default=None,
        description="ISO 3166 codes whose national identifiers to look for; null: all",
    )
    levels: dict[str, Level] = Field(
        default_factory=dict, description="Detector -> classification, overriding defaults"
    )
    dictionaries: list[SiteDictionarySettings] = Field(
        default_factory=list, description="Site dictionaries, read once at start-up"
    )


class ClassificationSettings(Section):
    """``classification:``: the level a team's prompts have before anyone declares one,
    and what the content scan looks for."""

    default: Level = Field(
        default="internal",
        description="Default classification of a team not listed (and of a caller with none)",
    )
    teams: dict[str, Level] = Field(
        default_factory=dict, description="Team -> default classification of its prompts"
    )
    scan: ContentScanSettings = Field(
        default_factory=ContentScanSettings,
        description="The content scan's detectors, countries, levels and site dictionaries",
    )

    def team_default(self, teams: frozenset[str]) -> Classification:
        """The strictest default among ``teams`` (``default`` for a team not listed, or
        when ``teams`` is empty)."""
        levels = [self.teams.get(team, self.default) for team in teams] or [self.default]
        return max(Classification.parse(level) for level in levels)
