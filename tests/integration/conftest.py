"""A gateway in front of the fake vLLM server, with a real SQLite audit store."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from appliance.audit.store import SqlAuditStore
from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from tests.support.fake_vllm import SECRET, FakeState, create_fake_vllm
from tests.support.servers import ServerThread, free_port

FAKE_MODELS = [
    "fake-model", "fake-slow", "fake-die", "fake-500", "fake-400", "fake-hang", "fake-garbage",
]  # fmt: skip
PEPPER = "test-pepper"


@dataclass
class GatewayHarness:
    settings: Settings
    secrets: DeploymentSecrets
    fake: FakeState
    keys: ApiKeyService
    store: SqlAuditStore
    user_key: str

    def key(self, *, roles: list[str] | None = None, models: list[str] | None = None) -> str:
        return self.keys.create(
            name="test", owner="tester", roles=roles or ["appliance-user"], models=models,
            now=utc_now(),
        ).secret  # fmt: skip

    def records(self, request_id: str) -> list:  # type: ignore[type-arg]
        return self.store.by_request(request_id)


@pytest.fixture(scope="session")
def fake_vllm() -> Iterator[tuple[str, FakeState]]:
    state = FakeState()
    with ServerThread(create_fake_vllm(state)) as server:
        yield server.url, state


def make_settings(tmp_path: Path, upstream_url: str, **gateway: object) -> Settings:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    upstreams = [{"model": name, "url": upstream_url} for name in FAKE_MODELS]
    upstreams.append({"model": "fake-absent", "url": dead})
    return Settings(
        data_dir=tmp_path / "data",
        database={"url": f"sqlite:///{tmp_path / 'gateway.db'}"},
        engine={"enabled": False},
        gateway={"upstreams": upstreams, "upstream_timeout_s": 1.0, **gateway},
    )


def migrated_settings(tmp_path: Path, upstream_url: str, database_url: str) -> Settings:
    """:func:`make_settings` on ``database_url`` (SQLite or PostgreSQL), migrated."""
    settings = make_settings(tmp_path, upstream_url)
    settings.database.url = database_url
    engine = create_db_engine(database_url)
    upgrade_database(engine)
    engine.dispose()
    return settings


def new_key(settings: Settings, roles: list[str], *, team: str | None = None) -> str:
    """A new API key's secret in the settings' database (the harness's pepper)."""
    engine = create_db_engine(settings.database_url)
    try:
        service = ApiKeyService(engine, PEPPER)
        return service.create(
            name="t", owner="tester", roles=roles, models=None, now=utc_now(), team=team
        ).secret
    finally:
        engine.dispose()


@pytest.fixture
def harness(tmp_path: Path, fake_vllm: tuple[str, FakeState]) -> GatewayHarness:
    url, state = fake_vllm
    settings = make_settings(tmp_path, url, max_body_bytes=4096)
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    keys = ApiKeyService(database, PEPPER)
    harness = GatewayHarness(
        settings=settings,
        secrets=DeploymentSecrets(engine_api_key=SECRET, api_key_pepper=PEPPER),
        fake=state,
        keys=keys,
        store=SqlAuditStore(database),
        user_key="",
    )
    harness.user_key = harness.key()
    return harness


@pytest.fixture
def client(harness: GatewayHarness) -> Iterator[TestClient]:
    app = create_app(harness.settings, secrets=harness.secrets)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


CRYPTO_PACKAGES = ("cryptography", "cffi", "pycparser")


@pytest.fixture(scope="session")
def clean_python(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(python of a new venv without site packages, a folder with only cryptography):
    where the standalone audit verifier must run, as a compliance officer would."""
    root = tmp_path_factory.mktemp("clean")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "venv")], check=True)
    site = root / "site"
    site.mkdir()
    import cryptography

    source = Path(cryptography.__file__).parents[1]
    for name in CRYPTO_PACKAGES:
        shutil.copytree(source / name, site / name)
    for backend in source.glob("_cffi_backend*"):
        shutil.copy(backend, site / backend.name)
    return root / "venv" / "bin" / "python", site
