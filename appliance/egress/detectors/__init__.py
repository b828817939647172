"""Detectors of sensitive content. Each is pure, stateless and validated (checksums,
format rules, decoded headers), not a bare regular expression."""

from __future__ import annotations

from appliance.egress.detectors.base import Detector, RegexDetector, Span
from appliance.egress.detectors.cards import CardDetector, card_brand, is_valid_card
from appliance.egress.detectors.dictionary import SiteDictionary, parse_terms
from appliance.egress.detectors.email import EmailDetector, is_valid_email
from appliance.egress.detectors.iban import IBAN_LENGTHS, IbanDetector, is_valid_iban
from appliance.egress.detectors.national import (
    DEFAULT_NATIONAL_IDS,
    NationalIdRegistry,
    NationalIdSpec,
)
from appliance.egress.detectors.phone import PhoneDetector
from appliance.egress.detectors.secrets import PemPrivateKeyDetector, is_jwt, secret_detectors

__all__ = [
    "DEFAULT_NATIONAL_IDS",
    "IBAN_LENGTHS",
    "CardDetector",
    "Detector",
    "EmailDetector",
    "IbanDetector",
    "NationalIdRegistry",
    "NationalIdSpec",
    "PemPrivateKeyDetector",
    "PhoneDetector",
    "RegexDetector",
    "SiteDictionary",
    "Span",
    "card_brand",
    "is_jwt",
    "is_valid_card",
    "is_valid_email",
    "is_valid_iban",
    "parse_terms",
    "secret_detectors",
]
