"""The built-in detectors, their default levels, and :func:`build_scanner` from a
:class:`ScannerConfig` (the shape the gateway's settings will map onto).

Default levels: secrets and keys ``restricted``; IBANs, payment cards and national
identifiers ``confidential``; e-mail addresses and phone numbers ``internal``; each site
dictionary its own (``confidential`` unless set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from appliance.egress.detectors.base import Detector
from appliance.egress.detectors.cards import CardDetector
from appliance.egress.detectors.dictionary import SiteDictionary
from appliance.egress.detectors.email import EmailDetector
from appliance.egress.detectors.iban import IbanDetector
from appliance.egress.detectors.national import DEFAULT_NATIONAL_IDS, NationalIdRegistry
from appliance.egress.detectors.phone import PhoneDetector
from appliance.egress.detectors.secrets import secret_detectors
from appliance.egress.levels import Classification
from appliance.egress.scanner import Scanner
from appliance.errors import ConfigurationError

__all__ = ["DEFAULT_LEVELS", "ScannerConfig", "build_scanner", "builtin_detectors"]


def builtin_detectors(
    registry: NationalIdRegistry = DEFAULT_NATIONAL_IDS,
) -> tuple[Detector, ...]:
    """Every built-in detector, national identifiers of every registered country included."""
    return (
        *secret_detectors(),
        IbanDetector(),
        CardDetector(),
        *(spec.detector() for spec in registry.specs),
        EmailDetector(),
        PhoneDetector(),
    )


DEFAULT_LEVELS: Mapping[str, Classification] = MappingProxyType(
    {detector.name: detector.level for detector in builtin_detectors()}
)
"""Built-in detector name -> default level."""


@dataclass(frozen=True, slots=True)
class ScannerConfig:
    """What a site turns on.

    - ``detectors``: built-in detector names to run (None: all of them);
    - ``countries``: ISO 3166 codes whose national identifiers to look for (None: every
      country in ``national_ids``; an empty set: none);
    - ``levels``: overrides, detector name -> level (a ``Classification`` or its name);
    - ``dictionaries``: site dictionaries, each with its own name and level;
    - ``national_ids``: the registry to draw national identifiers from.
    """

    detectors: frozenset[str] | None = None
    countries: frozenset[str] | None = None
    levels: Mapping[str, Classification | str] = field(default_factory=dict)
    dictionaries: tuple[SiteDictionary, ...] = ()
    national_ids: NationalIdRegistry = DEFAULT_NATIONAL_IDS


def build_scanner(config: ScannerConfig | None = None) -> Scanner:
    """A :class:`Scanner` for ``config``; a name, country or level it does not know is a
    :class:`~appliance.errors.ConfigurationError` (a typo must not disable a detector)."""
    config = config or ScannerConfig()
    registry = config.national_ids
    try:
        national = {spec.name for spec in registry.for_countries(config.countries)}
    except ValueError as exc:
        raise ConfigurationError(f"egress countries: {exc}") from None
    known = builtin_detectors(registry)
    unknown = sorted((config.detectors or frozenset()) - {d.name for d in known})
    if unknown:
        raise ConfigurationError(f"egress detectors: unknown {', '.join(unknown)}")
    national_names = {spec.name for spec in registry.specs}
    chosen = [
        d
        for d in known
        if (config.detectors is None or d.name in config.detectors)
        and (d.name not in national_names or d.name in national)
    ]
    try:
        levels = {name: Classification.parse(level) for name, level in config.levels.items()}
        return Scanner((*chosen, *config.dictionaries), levels)
    except ValueError as exc:
        raise ConfigurationError(f"egress scanner: {exc}") from None
