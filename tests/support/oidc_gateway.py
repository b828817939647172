"""A gateway configured for the test Keycloak realm, in-process or as a live server."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI

from appliance.audit.sink import MemoryAuditSink
from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.keys.deployment import DeploymentSecrets
from tests.oidc.flows import Realm
from tests.support.fake_vllm import SECRET
from tests.support.servers import ServerThread

PEPPER = "test-pepper"
MODELS = ["fake-model", "fake-slow", "fake-small"]
ROLE_MODELS = {
    "appliance-user": ["fake-*"],
    "appliance-admin": ["fake-*"],
    "appliance-small": ["fake-small*"],
}


def oidc_settings(
    tmp_path: Path, upstream_url: str, realm: Realm, models: list[str] | None = None, **oidc: object
) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        database={"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
        engine={"enabled": False},
        gateway={"upstreams": [{"model": m, "url": upstream_url} for m in models or MODELS]},
        policy={"role_models": ROLE_MODELS},
        oidc={
            "enabled": True,
            "server_url": realm.server_url,
            "realm": realm.realm,
            "gateway_client_secret": "gateway-secret",
            "introspection": True,
            "jwks_min_refetch_interval_s": 0,
            **oidc,
        },
    )


def oidc_app(settings: Settings, audit: MemoryAuditSink) -> FastAPI:
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    database.dispose()
    return create_app(
        settings,
        secrets=DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER),
        audit_sink=audit,
    )


@contextmanager
def live_gateway(settings: Settings) -> Iterator[tuple[str, FastAPI, MemoryAuditSink]]:
    """The gateway on a real loopback port (browsers and redirects need one)."""
    audit = MemoryAuditSink()
    app = oidc_app(settings, audit)
    with ServerThread(app) as server:
        yield server.url, app, audit
