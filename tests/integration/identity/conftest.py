"""A gateway with Keycloak sign-in, in front of the fake vLLM and the real test provider."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from appliance.audit.sink import MemoryAuditSink
from appliance.db import create_db_engine
from appliance.gateway.services import GatewayServices, utc_now
from appliance.identity.apikeys import ApiKeyService
from tests.integration.conftest import FAKE_MODELS, PEPPER
from tests.oidc.fixtures import fresh_keys, oidc_realm
from tests.oidc.provider import KeycloakRealm
from tests.support.fake_vllm import FakeState
from tests.support.oidc_gateway import oidc_app, oidc_settings

__all__ = ["fresh_keys", "oidc_realm"]


@dataclass
class OidcGateway:
    client: TestClient
    app: FastAPI
    audit: MemoryAuditSink
    fake: FakeState
    keys: ApiKeyService
    realm: KeycloakRealm

    @property
    def services(self) -> GatewayServices:
        services: GatewayServices = self.app.state.services
        return services

    def shift_clock(self, delta: timedelta) -> None:
        self.services.clock = lambda: utc_now() + delta

    def set_clock(self, clock: Callable[[], datetime]) -> None:
        self.services.clock = clock

    def records(self, response) -> list:  # type: ignore[no-untyped-def,type-arg]
        request_id = response.headers["x-request-id"]
        return [r for r in self.audit.records if r.request_id == request_id]

    def api_key(self, roles: list[str]) -> str:
        return self.keys.create(
            name="t", owner="tester", roles=roles, models=None, now=utc_now()
        ).secret


@pytest.fixture
def make_gateway(
    tmp_path: Path, fake_vllm: tuple[str, FakeState], oidc_realm: KeycloakRealm
) -> Iterator[Callable[..., OidcGateway]]:
    opened: list[TestClient] = []

    def build(**oidc: object) -> OidcGateway:
        url, state = fake_vllm
        settings = oidc_settings(tmp_path, url, oidc_realm, models=FAKE_MODELS, **oidc)
        audit = MemoryAuditSink()
        app = oidc_app(settings, audit)
        database = create_db_engine(settings.database_url)
        client = TestClient(app, raise_server_exceptions=False)
        client.__enter__()
        opened.append(client)
        return OidcGateway(
            client=client, app=app, audit=audit, fake=state,
            keys=ApiKeyService(database, PEPPER), realm=oidc_realm,
        )  # fmt: skip

    yield build
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def gateway(make_gateway: Callable[..., OidcGateway]) -> OidcGateway:
    return make_gateway()
