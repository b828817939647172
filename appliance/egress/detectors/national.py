"""National identifiers, one :class:`NationalIdSpec` per kind, grouped per country in a
:class:`NationalIdRegistry` so a site enables the countries it serves.

Built in (sources of the rules in each spec's ``reference``):

- ``de_steuer_id`` (DE): 11 digits, no leading 0, in the first 10 one digit twice or
  thrice and the others once, ISO 7064 MOD 11,10 check digit;
- ``fr_nir`` (FR): 13 characters (Corsica ``2A``/``2B``) and the key ``97 - n mod 97``;
- ``gb_nino`` (GB): 2 letters (HMRC prefix rules), 6 digits, suffix A-D;
- ``us_ssn`` (US): ``AAA-GG-SSSS``; area not 000, 666, 9xx; group not 00; serial not 0000;
- ``nl_bsn`` (NL): 9 digits passing the 11-proof.

Where a spec allows a space between groups, a no-break, narrow no-break or thin space
counts as one; kanji and kana next to a number are a boundary like a space
(:mod:`~appliance.egress.detectors.boundaries`).

Adding a country is adding a spec: ``DEFAULT_NATIONAL_IDS.register(spec)`` returns a new
registry.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from appliance.egress.detectors.base import RegexDetector
from appliance.egress.detectors.boundaries import (
    GROUP_SPACE,
    NUMBER_END,
    NUMBER_START,
    drop_group_spaces,
)
from appliance.egress.detectors.checksums import bsn_11_proof, iso7064_mod11_10, nir_key_valid
from appliance.egress.levels import Classification

__all__ = [
    "DEFAULT_NATIONAL_IDS",
    "NationalIdRegistry",
    "NationalIdSpec",
    "is_valid_bsn",
    "is_valid_nino",
    "is_valid_nir",
    "is_valid_ssn",
    "is_valid_steuer_id",
]


def _compact(value: str, separators: str = ".-") -> str:
    """``value`` upper-cased, without group spaces (:data:`GROUP_SPACE`) and ``separators``."""
    value = drop_group_spaces(value)
    for ch in separators:
        value = value.replace(ch, "")
    return value.upper()


def _spaced(pattern: str) -> str:
    """``pattern`` with each ``_`` standing for a group space (:data:`GROUP_SPACE`)."""
    return pattern.replace("_", GROUP_SPACE)


def is_valid_steuer_id(value: str) -> bool:
    """German Steuerliche Identifikationsnummer (§ 139b AO; BZSt)."""
    number = _compact(value)
    if len(number) != 11 or not number.isascii() or not number.isdigit() or number[0] == "0":
        return False
    repeated = [n for n in Counter(number[:10]).values() if n > 1]
    return len(repeated) == 1 and repeated[0] in (2, 3) and iso7064_mod11_10(number)


def is_valid_nir(value: str) -> bool:
    """French NIR (numéro de sécurité sociale), 15 characters with its key."""
    number = _compact(value)
    return number[:1] in ("1", "2", "3", "4", "7", "8") and nir_key_valid(number)


_NINO_FIRST = frozenset("ABCEGHJKLMNOPRSTWXYZ")  # not D F I Q U V
_NINO_SECOND = frozenset("ABCEGHJKLMNPRSTWXYZ")  # not D F I O Q U V
_NINO_UNUSED = frozenset({"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"})
_NINO = re.compile(r"[A-Z]{2}[0-9]{6}[A-D]")


def is_valid_nino(value: str) -> bool:
    """UK National Insurance number, format rules of HMRC NIM39110."""
    number = _compact(value, "")
    return (
        _NINO.fullmatch(number) is not None
        and number[0] in _NINO_FIRST
        and number[1] in _NINO_SECOND
        and number[:2] not in _NINO_UNUSED
    )


# Printed in advertising (a wallet insert, a pamphlet) and voided by the SSA.
_SSN_VOIDED = frozenset({"078051120", "219099999"})


_SSN = re.compile(_spaced(r"([0-9]{3})((?:-|_)?)([0-9]{2})\2([0-9]{4})"))


def is_valid_ssn(value: str) -> bool:
    """US Social Security number, format rules (SSA; no check digit exists); written
    compact or with the same separator (dash or a group space) twice."""
    match = _SSN.fullmatch(value)
    if match is None:
        return False
    area, _, group, serial = match.groups()
    number = area + group + serial
    return (
        area not in ("000", "666")
        and area[0] != "9"
        and group != "00"
        and serial != "0000"
        and number not in _SSN_VOIDED
    )


def is_valid_bsn(value: str) -> bool:
    """Dutch Burgerservicenummer, 9 digits passing the 11-proof."""
    return bsn_11_proof(_compact(value))


@dataclass(frozen=True, slots=True)
class NationalIdSpec:
    """One kind of national identifier: where it is used, how to find it, how to check it."""

    country: str
    name: str
    pattern: re.Pattern[str]
    validate: Callable[[str], bool]
    reference: str
    label: str = "NATIONAL_ID"
    level: Classification = Classification.CONFIDENTIAL

    def detector(self) -> RegexDetector:
        return RegexDetector(self.name, self.label, self.level, self.pattern, self.validate)


@dataclass(frozen=True, slots=True)
class NationalIdRegistry:
    """The national identifier kinds a site may enable, by ISO 3166-1 alpha-2 country."""

    specs: tuple[NationalIdSpec, ...] = ()

    def __post_init__(self) -> None:
        names = [spec.name for spec in self.specs]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"national id names registered twice: {', '.join(duplicates)}")

    @property
    def countries(self) -> frozenset[str]:
        return frozenset(spec.country for spec in self.specs)

    def register(self, spec: NationalIdSpec) -> NationalIdRegistry:
        """A new registry with ``spec`` added (``ValueError`` if its name is taken)."""
        return NationalIdRegistry((*self.specs, spec))

    def for_countries(self, countries: Iterable[str] | None = None) -> tuple[NationalIdSpec, ...]:
        """The specs of ``countries`` (every registered one when None); an unknown
        country is a ``ValueError`` rather than a silently unscanned one."""
        if countries is None:
            return self.specs
        wanted = {country.upper() for country in countries}
        unknown = sorted(wanted - self.countries)
        if unknown:
            raise ValueError(f"no national identifiers registered for: {', '.join(unknown)}")
        return tuple(spec for spec in self.specs if spec.country in wanted)


def _number(body: str) -> re.Pattern[str]:
    """A number written as ``body`` (``_`` for a group space), between number boundaries."""
    return re.compile(f"{NUMBER_START}(?:{_spaced(body)}){NUMBER_END}")


DEFAULT_NATIONAL_IDS = NationalIdRegistry(
    (
        NationalIdSpec(
            country="DE",
            name="de_steuer_id",
            # Printed compact or as "12 345 678 901".
            pattern=_number(r"[1-9][0-9](?:_?[0-9]{3}){3}"),
            validate=is_valid_steuer_id,
            reference="§ 139b AO; BZSt; ISO 7064 MOD 11,10",
        ),
        NationalIdSpec(
            country="FR",
            name="fr_nir",
            # "1 84 12 76 451 089 46": sex, year, month, department (2A/2B), commune, order, key.
            pattern=_number(
                r"[1-478]_?[0-9]{2}_?[0-9]{2}_?(?:[0-9]{2}|2[ABab])_?[0-9]{3}_?[0-9]{3}_?[0-9]{2}"
            ),
            validate=is_valid_nir,
            reference="INSEE, NIR key = 97 - (NIR mod 97)",
        ),
        NationalIdSpec(
            country="GB",
            name="gb_nino",
            pattern=re.compile(
                _spaced(r"(?<![A-Za-z0-9])[A-Z]{2}(?:_?[0-9]{2}){3}_?[A-D](?![A-Za-z0-9])")
            ),
            validate=is_valid_nino,
            reference="HMRC National Insurance Manual NIM39110",
        ),
        NationalIdSpec(
            country="US",
            name="us_ssn",
            # Written with dashes (or spaces), the same separator twice; a bare 9-digit
            # run is too common to call an SSN.
            pattern=_number(r"[0-9]{3}(?P<sep>-|_)[0-9]{2}(?P=sep)[0-9]{4}"),
            validate=is_valid_ssn,
            reference="SSA, SSN randomization (2011); area/group/serial exclusions",
        ),
        NationalIdSpec(
            country="NL",
            name="nl_bsn",
            pattern=_number(r"[0-9]{9}|[0-9]{4}\.[0-9]{2}\.[0-9]{3}"),
            validate=is_valid_bsn,
            reference="Wet algemene bepalingen burgerservicenummer; 11-proef",
        ),
    )
)
