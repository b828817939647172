"""appliance_gateway_audit_spool (docs/audit.md, "The spool"): true, appliance.yaml turns
the spool on in <data_dir>/audit-spool and the role creates that directory, the gateway
user's, mode 0700, inside the unit's ReadWritePaths; false (the default), neither.
The real role, ``connection: local`` under a temporary root."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import pytest

from appliance.config import Settings, load_settings
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
DATA_DIR = "/var/lib/appliance"


def _owner() -> tuple[str, str]:
    """Another user when root, so the role's chown is seen to happen; else oneself."""
    user = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    return user.pw_name, grp.getgrgid(user.pw_gid).gr_name


def _deploy(tmp: Path, **variables: Any) -> tuple[Settings, Path, dict[str, list[str]]]:
    """appliance.yaml as loaded by the gateway, the host's root, the unit's directives."""
    user, group = _owner()
    inventory = local_inventory(
        tmp,
        {"appliance_gateway": {"gw": {}}},
        appliance_gateway_tls_mode="none",
        appliance_gateway_migrate=False,
        appliance_gateway_engine_api_key="s3cret",
        appliance_gateway_upstreams=[{"model": "m", "url": "http://10.0.10.10:8100"}],
        # Nothing installs (no user is created): the directories are chowned to `user`.
        appliance_gateway_create_user=True,
        appliance_gateway_user=user,
        appliance_gateway_group=group,
        **variables,
    )
    playbook = tmp / "spool.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory)
    assert run.returncode == 0, run.output
    host = tmp / "root" / "gw"
    settings = load_settings(host / "etc/appliance/appliance.yaml")
    unit = unit_directives((host / "etc/systemd/system/appliance-gateway.service").read_text())
    return settings, host, unit


def test_off_by_default(tmp_path: Path) -> None:
    settings, host, _ = _deploy(tmp_path)
    assert settings.audit.spool.enabled is False and settings.audit.spool.directory is None
    assert not (host / DATA_DIR.lstrip("/") / "audit-spool").exists()


def test_on_the_spool_is_in_the_data_directory(tmp_path: Path) -> None:
    settings, host, unit = _deploy(
        tmp_path,
        appliance_gateway_audit_spool=True,
        appliance_gateway_settings={"audit": {"spool": {"max_bytes": 1 << 28}}},
    )
    spool = settings.audit.spool
    assert spool.enabled is True
    assert spool.directory == Path(DATA_DIR) / "audit-spool"
    assert spool.max_bytes == 1 << 28  # the admin's other spool settings are merged in

    directory = host / str(spool.directory).lstrip("/")
    info = directory.stat()
    user, group = _owner()
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert pwd.getpwuid(info.st_uid).pw_name == user
    assert grp.getgrgid(info.st_gid).gr_name == group
    # ProtectSystem=full leaves it writable only through ReadWritePaths.
    (paths,) = unit["ReadWritePaths"]
    assert any(spool.directory.is_relative_to(p) for p in paths.split())
