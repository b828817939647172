"""appliance/egress/defaults.py: the built-in set, default levels, and build_scanner's
handling of configuration (including its refusals)."""

from __future__ import annotations

import pytest

from appliance.egress import (
    DEFAULT_LEVELS,
    Classification,
    ScannerConfig,
    SiteDictionary,
    build_scanner,
    builtin_detectors,
)
from appliance.errors import ConfigurationError

RES, CONF, INT = Classification.RESTRICTED, Classification.CONFIDENTIAL, Classification.INTERNAL


def test_default_levels() -> None:
    assert dict(DEFAULT_LEVELS) == {
        "pem_private_key": RES,
        "aws_access_key_id": RES,
        "github_token": RES,
        "slack_token": RES,
        "api_key": RES,
        "jwt": RES,
        "iban": CONF,
        "payment_card": CONF,
        "de_steuer_id": CONF,
        "fr_nir": CONF,
        "gb_nino": CONF,
        "us_ssn": CONF,
        "nl_bsn": CONF,
        "email": INT,
        "phone": INT,
    }


def test_default_scanner_runs_every_builtin() -> None:
    assert build_scanner().names == tuple(d.name for d in builtin_detectors())


def test_select_detectors_and_countries() -> None:
    scanner = build_scanner(
        ScannerConfig(
            detectors=frozenset({"email", "iban", "de_steuer_id", "us_ssn"}),
            countries=frozenset({"DE"}),
        )
    )
    assert scanner.names == ("iban", "de_steuer_id", "email")
    assert build_scanner(ScannerConfig(countries=frozenset())).names == (
        "pem_private_key",
        "aws_access_key_id",
        "github_token",
        "slack_token",
        "api_key",
        "jwt",
        "iban",
        "payment_card",
        "email",
        "phone",
    )


def test_level_overrides_accept_names() -> None:
    scanner = build_scanner(
        ScannerConfig(levels={"email": "confidential", "jwt": Classification.CONFIDENTIAL})
    )
    assert scanner.scan("jane@example.com").classification is CONF


def test_dictionaries_join_the_scanner() -> None:
    codenames = SiteDictionary(
        "dictionary.codenames", ("Falcon",), Classification.RESTRICTED, "CODENAME"
    )
    scanner = build_scanner(
        ScannerConfig(dictionaries=(codenames,), levels={"dictionary.codenames": "internal"})
    )
    (finding,) = scanner.scan("about Falcon").findings
    assert (finding.detector, finding.label, finding.level) == (
        "dictionary.codenames",
        "CODENAME",
        INT,
    )


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ScannerConfig(detectors=frozenset({"emial"})), "unknown emial"),
        (ScannerConfig(countries=frozenset({"DE", "ZZ"})), "ZZ"),
        (ScannerConfig(levels={"emial": "internal"}), "emial"),
        (ScannerConfig(levels={"email": "secret"}), "secret"),
        (ScannerConfig(dictionaries=(SiteDictionary("email", ("x",)),)), "twice"),
    ],
)
def test_configuration_errors(config: ScannerConfig, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        build_scanner(config)
