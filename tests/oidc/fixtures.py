"""Pytest fixtures for the test identity provider; conftests import ``oidc_realm``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.oidc.provider import (
    KIDS,
    REQUIRE_ENV,
    KeycloakRealm,
    required,
    running_provider,
    unavailable_reason,
)

__all__ = ["oidc_realm"]


@pytest.fixture(scope="session")
def oidc_realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeycloakRealm]:
    """The Keycloak-shaped oidc-provider, one per test session, on a free loopback port."""
    reason = unavailable_reason()
    if reason is not None:
        if required():
            pytest.fail(f"{REQUIRE_ENV}=1 but {reason}")
        pytest.skip(reason)
    with running_provider(tmp_path_factory.mktemp("oidc")) as realm:
        yield realm


@pytest.fixture
def fresh_keys(oidc_realm: KeycloakRealm) -> Iterator[KeycloakRealm]:
    """For tests that rotate keys: the realm is put back to its first key afterwards."""
    yield oidc_realm
    oidc_realm.publish(KIDS[0])
