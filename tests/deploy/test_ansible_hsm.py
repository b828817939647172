"""The gateway role with the audit keys in a PKCS#11 HSM: appliance_gateway_hsm_* set
audit.keys in appliance.yaml, place the PIN file (0600), pass the module's environment
and open its token directory in the unit's sandbox; a missing module stops the play
naming the path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from appliance.config import Settings
from tests.deploy.ansible_harness import (
    ansible_available,
    local_inventory,
    run_playbook,
    unit_directives,
)

pytestmark = pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed")

PLAYBOOK = """\
- name: Gateway
  hosts: appliance_gateway
  gather_facts: false
  roles:
    - role: appliance_gateway
"""
MODULE = "/usr/lib/softhsm/libsofthsm2.so"


def _deploy(tmp: Path, **variables: Any) -> tuple[int, str, Path]:
    inventory = local_inventory(
        tmp,
        {"appliance_gateway": {"gw": {}}},
        appliance_gateway_tls_mode="none",
        appliance_gateway_migrate=False,
        appliance_gateway_engine_api_key="s3cret",
        appliance_gateway_upstreams=[{"model": "m", "url": "http://10.0.10.10:8100"}],
        **variables,
    )
    playbook = tmp / "hsm.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory)
    return run.returncode, run.output, tmp / "root" / "gw"


def test_the_gateway_is_configured_for_the_token(tmp_path: Path) -> None:
    module = tmp_path / "root" / "gw" / MODULE.lstrip("/")
    module.parent.mkdir(parents=True)
    module.write_bytes(b"\x7fELF")  # the play only checks that the vendor's module is there
    code, output, host = _deploy(
        tmp_path,
        appliance_gateway_hsm_module=MODULE,
        appliance_gateway_hsm_token_label="appliance-audit",
        appliance_gateway_hsm_pin="87654321",
        appliance_gateway_hsm_algorithm="ecdsa-p256",
        appliance_gateway_hsm_env={"SOFTHSM2_CONF": "/etc/softhsm/softhsm2.conf"},
        appliance_gateway_hsm_read_write_paths=["/var/lib/softhsm/tokens"],
    )
    assert code == 0, output
    assert "87654321" not in output  # no_log
    config = yaml.safe_load((host / "etc/appliance/appliance.yaml").read_text())
    settings = Settings.model_validate(config)
    keys = settings.audit.keys
    assert keys.backend == "pkcs11" and keys.pkcs11.module == Path(MODULE)
    assert keys.pkcs11.token_label == "appliance-audit" and keys.pkcs11.algorithm == "ecdsa-p256"
    assert keys.pkcs11.pin_file == Path("/etc/appliance/hsm.pin")
    pin = host / "etc/appliance/hsm.pin"
    assert pin.read_text() == "87654321\n" and pin.stat().st_mode & 0o777 == 0o600
    env = (host / "etc/appliance/gateway.env").read_text().splitlines()
    assert "SOFTHSM2_CONF=/etc/softhsm/softhsm2.conf" in env
    unit = unit_directives((host / "etc/systemd/system/appliance-gateway.service").read_text())
    assert unit["ReadWritePaths"] == ["/var/lib/appliance /var/lib/softhsm/tokens"]


def test_a_missing_module_stops_the_play_naming_it(tmp_path: Path) -> None:
    code, output, host = _deploy(
        tmp_path,
        appliance_gateway_hsm_module="/opt/vendor/libnothere.so",
        appliance_gateway_hsm_token_label="appliance-audit",
    )
    assert code != 0
    assert "PKCS#11 module not found: /opt/vendor/libnothere.so" in output
    assert not (host / "etc/appliance/appliance.yaml").exists()
