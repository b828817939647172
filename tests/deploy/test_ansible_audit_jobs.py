"""The appliance_audit_jobs role (issue #20) for real against localhost, after the
gateway role in the same play as site.yml runs them: the SIEM forwarder's unit only
while audit.forward.host is set, the daily retention timer, the witness timer only
with audit.witnesses; all on the first gateway host only, as the gateway's user with its
settings and sandbox; a second run changes nothing, a changed setting restarts the
forwarder, and switching a job off removes its units. No systemd runs here:
``systemd-analyze verify`` checks the units."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.ansible_harness import (
    VENV_BIN,
    ansible_available,
    local_inventory,
    recap,
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
    - role: appliance_audit_jobs
"""
UNIT_DIR = "etc/systemd/system"
SANDBOX = (
    "User", "Group", "WorkingDirectory", "EnvironmentFile", "NoNewPrivileges", "PrivateTmp",
    "ProtectSystem", "ReadWritePaths",
)  # fmt: skip
FORWARD = {"host": "10.40.0.9", "format": "cef"}
WITNESSES = [{"verifier_key": "w1.example+01234567+AQ", "url": "https://witness.example.org/"}]
ALL_UNITS = {
    "appliance-audit-forward.service",
    "appliance-retention.service",
    "appliance-retention.timer",
    "appliance-witness-submit.service",
    "appliance-witness-submit.timer",
}


def _deploy(tmp: Path, audit: dict[str, Any], **extra: Any) -> tuple[Path, str]:
    tmp.mkdir(parents=True, exist_ok=True)
    inventory = local_inventory(
        tmp,
        {"appliance_gateway": {"gw-0": {}, "gw-1": {}}},
        appliance_engine_api_key="s3cret",
        appliance_gateway_tls_mode="none",
        appliance_gateway_migrate=False,
        appliance_engine_served_model_name="smollm2-135m-instruct",
        appliance_gateway_upstreams=[{"model": "m", "url": "http://127.0.0.1:8100"}],
        appliance_gateway_database_url="postgresql+psycopg://appliance@db.example.internal/appliance",
        appliance_gateway_settings={"audit": audit} if audit else {},
        **extra,
    )
    playbook = tmp / "gateway.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory, timeout=300)
    assert run.returncode == 0, run.output
    return tmp / "root", run.output


def _units(root: Path, host: str) -> dict[str, str]:
    unit_dir = root / host / UNIT_DIR
    return {
        p.name: p.read_text(encoding="utf-8")
        for p in unit_dir.glob("appliance-*")
        if p.name != "appliance-gateway.service"
    }


def _one(unit: str, key: str) -> str:
    (value,) = unit_directives(unit)[key]
    return value


def _verify(root: Path, host: str, names: set[str]) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze not installed")
    paths = [str(root / host / UNIT_DIR / name) for name in sorted(names)]
    result = subprocess.run(
        ["systemd-analyze", "verify", *paths], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_by_default_only_the_daily_retention_timer(tmp_path: Path) -> None:
    root, _ = _deploy(tmp_path, {})
    units = _units(root, "gw-0")
    assert set(units) == {"appliance-retention.service", "appliance-retention.timer"}
    assert _units(root, "gw-1") == {}  # one host runs the jobs
    timer = units["appliance-retention.timer"]
    assert _one(timer, "OnCalendar") == "*-*-* 03:17:00"
    assert _one(timer, "Persistent") == "true"
    assert _one(timer, "Unit") == "appliance-retention.service"
    assert _one(timer, "WantedBy") == "timers.target"
    service = units["appliance-retention.service"]
    assert _one(service, "Type") == "oneshot"
    assert shlex.split(_one(service, "ExecStart")) == [
        f"{VENV_BIN.parent}/bin/appliance", "audit", "retention", "apply",
        "--actor", "scheduled-retention",
    ]  # fmt: skip
    gateway = (root / "gw-0" / UNIT_DIR / "appliance-gateway.service").read_text()
    for key in SANDBOX:
        assert unit_directives(service)[key] == unit_directives(gateway)[key], key
    _verify(root, "gw-0", set(units))


def test_forwarder_and_witness_timer_when_configured(tmp_path: Path) -> None:
    root, first = _deploy(
        tmp_path,
        {"forward": FORWARD, "witnesses": WITNESSES},
        appliance_audit_jobs_witness_on_calendar="*:0/10",
    )
    units = _units(root, "gw-0")
    assert set(units) == ALL_UNITS
    assert _units(root, "gw-1") == {}
    gateway = (root / "gw-0" / UNIT_DIR / "appliance-gateway.service").read_text()

    forward = units["appliance-audit-forward.service"]
    assert shlex.split(_one(forward, "ExecStart")) == [
        f"{VENV_BIN.parent}/bin/appliance", "audit", "forward",
    ]  # fmt: skip
    assert _one(forward, "Restart") == "always"
    assert _one(forward, "Type") == "exec"
    assert _one(forward, "WantedBy") == "multi-user.target"
    assert "appliance-gateway.service" in _one(forward, "After").split()

    witness = units["appliance-witness-submit.service"]
    assert shlex.split(_one(witness, "ExecStart")) == [
        f"{VENV_BIN.parent}/bin/appliance", "witness", "submit",
    ]  # fmt: skip
    assert _one(witness, "Type") == "oneshot"
    timer = units["appliance-witness-submit.timer"]
    assert _one(timer, "OnCalendar") == "*:0/10"
    assert _one(timer, "Unit") == "appliance-witness-submit.service"
    for unit in (forward, witness, units["appliance-retention.service"]):
        for key in SANDBOX:
            assert unit_directives(unit)[key] == unit_directives(gateway)[key], key
    _verify(root, "gw-0", set(units))

    # The settings' checksums: the secret file's content is not in it.
    stamp = root / "gw-0/etc/appliance/audit-forward.settings.sha256"
    assert stamp.stat().st_mode & 0o777 == 0o600
    assert [line.split()[1] for line in stamp.read_text().splitlines()] == [
        "appliance.yaml", "gateway.env",
    ]  # fmt: skip

    # Idempotent.
    again = run_playbook(tmp_path / "gateway.yml", tmp_path / "inventory.yml", timeout=300)
    assert again.returncode == 0, again.output
    assert {host: c["changed"] for host, c in recap(again.output).items()} == {
        "gw-0": 0,
        "gw-1": 0,
    }, again.output
    assert "Restart appliance audit forwarder" in first


def test_a_changed_setting_restarts_the_forwarder_and_off_removes_it(tmp_path: Path) -> None:
    root, _ = _deploy(tmp_path / "a", {"forward": FORWARD})
    assert "appliance-audit-forward.service" in _units(root, "gw-0")
    # Same root, another SIEM format: appliance.yaml changes, the forwarder restarts.
    inventory_vars: dict[str, Any] = {"appliance_prefix": f"{root}/{{{{ inventory_hostname }}}}"}
    _, changed = _deploy(
        tmp_path / "b", {"forward": {**FORWARD, "format": "ocsf"}}, **inventory_vars
    )
    assert "RUNNING HANDLER [appliance_audit_jobs : Restart appliance audit forwarder]" in changed
    # Forwarding off: its unit goes, retention stays.
    _, off = _deploy(tmp_path / "c", {}, **inventory_vars)
    assert set(_units(root, "gw-0")) == {"appliance-retention.service", "appliance-retention.timer"}
    assert "RUNNING HANDLER [appliance_audit_jobs : Reload systemd for appliance audit jobs]" in off


def test_retention_can_be_switched_off(tmp_path: Path) -> None:
    root, _ = _deploy(tmp_path, {}, appliance_audit_jobs_retention=False)
    assert _units(root, "gw-0") == {}
