"""Mutual TLS between the gateway and the engine head on bare metal: the engine role
places the head's certificate from `appliance certs init` and runs vLLM with the
--ssl-* flags; the gateway role places its client certificate and points an https://
upstream at the head with gateway.engine_tls."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from appliance.cli.main import app as cli
from appliance.config import Settings
from tests.deploy.ansible_harness import (
    ansible_available,
    local_inventory,
    plan_vars,
    run_playbook,
    unit_directives,
)

pytestmark = pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed")

PLAYBOOK = """\
- name: Engines
  hosts: appliance_engine
  gather_facts: false
  roles:
    - role: appliance_engine
- name: Gateway
  hosts: appliance_gateway
  gather_facts: false
  roles:
    - role: appliance_gateway
"""


def _flag(argv: list[str], name: str) -> str:
    assert argv.count(name) == 1, argv
    return argv[argv.index(name) + 1]


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("engine-tls")
    pki = tmp / "pki"
    issued = CliRunner().invoke(
        cli, ["certs", "init", "--dir", str(pki), "--engine", "engine-0=10.0.10.10"]
    )
    assert issued.exit_code == 0, issued.output
    plan = plan_vars(tmp, "-m", "smollm2-135m-instruct", "--gpu", "cpu", "--gpus-per-node", "1")
    inventory = local_inventory(
        tmp,
        {
            "appliance_engine": {"gpu-0": {"ansible_host": "10.0.10.10"}},
            "appliance_gateway": {"gw": {}},
        },
        appliance_engine_api_key="s3cret",
        appliance_engine_tls_cert_src=str(pki / "engine-0.crt"),
        appliance_engine_tls_key_src=str(pki / "engine-0.key"),
        appliance_engine_tls_ca_src=str(pki / "ca.crt"),
        appliance_gateway_tls_mode="none",
        appliance_gateway_migrate=False,
        appliance_gateway_engine_tls_ca_src=str(pki / "ca.crt"),
        appliance_gateway_engine_tls_cert_src=str(pki / "gateway.crt"),
        appliance_gateway_engine_tls_key_src=str(pki / "gateway.key"),
    )
    playbook = tmp / "tls.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory, "-e", f"@{plan}")
    assert run.returncode == 0, run.output
    return tmp / "root"


def test_the_head_serves_mutual_tls_with_the_placed_certificate(deployed: Path) -> None:
    engine = deployed / "gpu-0"
    unit = (engine / "etc/systemd/system/appliance-engine-head.service").read_text()
    (exec_start,) = unit_directives(unit)["ExecStart"]
    argv = shlex.split(exec_start)
    assert _flag(argv, "--ssl-keyfile") == "/etc/appliance/engine-tls/engine.key"
    assert _flag(argv, "--ssl-certfile") == "/etc/appliance/engine-tls/engine.crt"
    assert _flag(argv, "--ssl-ca-certs") == "/etc/appliance/engine-tls/ca.crt"
    assert _flag(argv, "--ssl-cert-reqs") == "2"
    placed = engine / "etc/appliance/engine-tls"
    assert (placed / "engine.key").stat().st_mode & 0o777 == 0o640
    assert (placed / "engine.crt").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert (placed / "ca.crt").exists()


def test_the_gateway_reaches_the_head_over_https_with_its_client_certificate(
    deployed: Path,
) -> None:
    gateway = deployed / "gw"
    config = yaml.safe_load((gateway / "etc/appliance/appliance.yaml").read_text())
    settings = Settings.model_validate(config)
    assert [u.url for u in settings.gateway.upstreams] == ["https://10.0.10.10:8100"]
    tls = settings.gateway.engine_tls
    assert (tls.ca_file, tls.cert_file, tls.key_file) == (
        Path("/etc/appliance/tls/engine-ca.crt"),
        Path("/etc/appliance/tls/engine-client.crt"),
        Path("/etc/appliance/tls/engine-client.key"),
    )
    placed = gateway / "etc/appliance/tls"
    assert (placed / "engine-client.key").stat().st_mode & 0o777 == 0o640
    assert (placed / "engine-ca.crt").exists() and (placed / "engine-client.crt").exists()
