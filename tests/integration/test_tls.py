"""Encryption in transit: the gateway over HTTPS with certificates from
``appliance certs init``, weak protocol versions refused, HSTS, and mutual TLS to an
engine that refuses clients without a certificate."""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from appliance.cli.main import app as cli
from appliance.config import Settings
from appliance.gateway import create_app
from appliance.gateway.tls import gateway_server_config
from tests.support.fake_vllm import FakeState, create_fake_vllm
from tests.support.requests import CHAT, auth, chat_body
from tests.support.servers import free_port


class _Server:
    def __init__(self, config: uvicorn.Config) -> None:
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive()
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki")
    result = CliRunner().invoke(
        cli,
        ["certs", "init", "--dir", str(directory), "--gateway-host", "127.0.0.1",
         "--engine", "engine-0=127.0.0.1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (directory / "gateway.key").stat().st_mode & 0o777 == 0o600
    return directory


def _https_settings(harness, pki: Path, **gateway: object) -> Settings:  # type: ignore[no-untyped-def]
    data = harness.settings.model_dump()
    data["gateway"].update(
        host="127.0.0.1", port=free_port(), tls_cert_file=pki / "gateway.crt",
        tls_key_file=pki / "gateway.key", **gateway,
    )  # fmt: skip
    return Settings.model_validate(data)


def test_gateway_serves_https_with_hsts_and_refuses_old_tls(harness, pki) -> None:
    settings = _https_settings(harness, pki)
    app = create_app(settings, secrets=harness.secrets)
    config = gateway_server_config(app, settings, log_level="warning")
    url = f"https://127.0.0.1:{settings.gateway.port}"
    with _Server(config):
        with httpx.Client(verify=str(pki / "ca.crt")) as client:
            response = client.post(f"{url}{CHAT}", json=chat_body(), headers=auth(harness.user_key))
            assert response.status_code == 200
            assert response.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(httpx.ConnectError):  # not trusted without our CA
            httpx.get(f"{url}/healthz")
        old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        old.load_verify_locations(pki / "ca.crt")
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
        try:
            old.set_ciphers("ALL:@SECLEVEL=0")
        except ssl.SSLError:
            pass
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{url}/healthz", verify=old)
        tls12 = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        tls12.maximum_version = ssl.TLSVersion.TLSv1_2
        assert httpx.get(f"{url}/healthz", verify=tls12).status_code == 200


def test_mutual_tls_to_an_engine(harness, pki) -> None:
    state = FakeState()
    port = free_port()
    engine = uvicorn.Config(
        create_fake_vllm(state), host="127.0.0.1", port=port, log_level="warning",
        ssl_certfile=str(pki / "engine-0.crt"), ssl_keyfile=str(pki / "engine-0.key"),
        ssl_ca_certs=str(pki / "ca.crt"), ssl_cert_reqs=ssl.CERT_REQUIRED,
    )  # fmt: skip
    engine_url = f"https://127.0.0.1:{port}"
    data = harness.settings.model_dump()
    data["gateway"]["upstreams"] = [{"model": "fake-model", "url": engine_url}]
    data["gateway"]["routing"]["health_interval_s"] = 0
    data["gateway"]["engine_tls"] = {
        "ca_file": pki / "ca.crt",
        "cert_file": pki / "gateway.crt",
        "key_file": pki / "gateway.key",
    }
    settings = Settings.model_validate(data)
    from fastapi.testclient import TestClient

    with _Server(engine):
        # Without a client certificate the engine refuses the TLS handshake.
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"{engine_url}/health", verify=str(pki / "ca.crt"))
        with TestClient(create_app(settings, secrets=harness.secrets)) as client:
            response = client.post(CHAT, json=chat_body(), headers=auth(harness.user_key))
        assert response.status_code == 200
        assert len(state.requests) == 1


def test_appliance_up_honours_the_gateway_tls_settings(
    pki: Path, tmp_path: Path, fake_vllm
) -> None:  # type: ignore[no-untyped-def]
    """`appliance up` and `appliance serve` start the gateway the same way
    (appliance/gateway/run.py): with TLS configured, `up` serves HTTPS only."""
    import os
    import subprocess
    import sys

    import yaml

    port = free_port()
    config = tmp_path / "appliance.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "engine": {"enabled": False},
        "gateway": {
            "host": "127.0.0.1", "port": port, "tls_cert_file": str(pki / "gateway.crt"),
            "tls_key_file": str(pki / "gateway.key"),
            "upstreams": [{"model": "fake-model", "url": fake_vllm[0]}],
        },
    }), encoding="utf-8")  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "appliance.cli", "up", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                response = httpx.get(
                    f"https://127.0.0.1:{port}/healthz", verify=str(pki / "ca.crt")
                )
                break
            except httpx.HTTPError:
                assert process.poll() is None, process.communicate()[0]
                assert time.monotonic() < deadline, "appliance up did not start"
                time.sleep(0.3)
        assert response.status_code == 200
        assert response.headers["strict-transport-security"].startswith("max-age=")
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on that port
            httpx.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"https://127.0.0.1:{port}/v1" in output
