"""Fixtures for the egress tests: the default scanner (built once, it is immutable)."""

from __future__ import annotations

import pytest

from appliance.egress import Scanner, build_scanner


@pytest.fixture(scope="session")
def scanner() -> Scanner:
    return build_scanner()
