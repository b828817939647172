"""appliance_gateway_workers: written to appliance.yaml (gateway.workers) and given to
uvicorn (--workers) resolved as the gateway resolves it: auto is 1 on SQLite and with
limits counted in memory, the host's vCPUs on PostgreSQL with Redis limits; a number is
kept. ``connection: local`` under a temporary root."""

from __future__ import annotations

import shlex
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
  post_tasks:
    - name: Report the vCPUs the role counted
      ansible.builtin.debug:
        msg: "vcpus={{ ansible_facts['processor_vcpus'] | default('unknown') }}"
"""
POSTGRES = "postgresql+psycopg://gw@db.internal/appliance"
REDIS_LIMITS = {"store": "redis", "redis_url": "redis://redis.internal:6379/0",
                "teams": {"*": {"tpm": 1000}}}  # fmt: skip


def _deploy(tmp: Path, **variables: Any) -> tuple[int, Settings, str]:
    """appliance.yaml as settings, the unit's --workers, and whether the role counted."""
    inventory = local_inventory(
        tmp,
        {"appliance_gateway": {"gw": {}}},
        appliance_gateway_tls_mode="none",
        appliance_gateway_migrate=False,
        appliance_gateway_engine_api_key="s3cret",
        appliance_gateway_upstreams=[{"model": "m", "url": "http://10.0.10.10:8100"}],
        **variables,
    )
    playbook = tmp / "workers.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory)
    assert run.returncode == 0, run.output
    host = tmp / "root" / "gw"
    settings = Settings.model_validate(
        yaml.safe_load((host / "etc/appliance/appliance.yaml").read_text())
    )
    unit = unit_directives((host / "etc/systemd/system/appliance-gateway.service").read_text())
    (line,) = unit["ExecStart"]
    argv = shlex.split(line)
    return int(argv[argv.index("--workers") + 1]), settings, run.output


def test_auto_is_one_on_sqlite(tmp_path: Path) -> None:
    workers, settings, output = _deploy(tmp_path)
    assert settings.gateway.workers == "auto" and workers == 1
    assert "vcpus=unknown" in output  # nothing to count for


def test_auto_is_one_with_limits_in_memory(tmp_path: Path) -> None:
    workers, settings, _ = _deploy(
        tmp_path,
        appliance_gateway_database_url=POSTGRES,
        appliance_gateway_settings={"limits": {"teams": {"*": {"tpm": 1000}}}},
    )
    assert settings.limits.enabled and workers == 1


def test_auto_is_the_vcpus_on_postgresql_with_redis_limits(tmp_path: Path) -> None:
    workers, _, output = _deploy(
        tmp_path,
        appliance_gateway_database_url=POSTGRES,
        appliance_gateway_settings={"limits": REDIS_LIMITS},
    )
    assert f"vcpus={workers}" in output and workers >= 1


def test_a_number_is_kept(tmp_path: Path) -> None:
    workers, settings, _ = _deploy(
        tmp_path,
        appliance_gateway_database_url=POSTGRES,
        appliance_gateway_workers=3,
        appliance_gateway_settings={"limits": REDIS_LIMITS},
    )
    assert settings.gateway.workers == 3 and workers == 3
