"""Run the appliance's Ansible roles for real against localhost (``connection: local``),
installing into a throwaway root directory, and read back what they rendered.

Every host of a test inventory is the local machine; ``appliance_prefix`` puts each
host's files under ``<root>/<inventory_hostname>/`` so two "nodes" never collide.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
VENV_BIN = Path(sys.executable).parent
PROFILES = REPO / "appliance" / "models"

__all__ = [
    "ANSIBLE_DIR",
    "REPO",
    "VENV_BIN",
    "PlaybookRun",
    "ansible_available",
    "local_inventory",
    "plan_vars",
    "recap",
    "run_playbook",
    "unit_directives",
]


def ansible_available() -> bool:
    return (VENV_BIN / "ansible-playbook").exists()


def plan_vars(tmp: Path, *args: str) -> Path:
    """The planner's real ``--format ansible-vars`` output for ``args``."""
    out = tmp / "plan-vars.yml"
    subprocess.run(
        [str(VENV_BIN / "appliance"), "plan", *args, "--profiles-dir", str(PROFILES),
         "--format", "ansible-vars", "--output", str(out)],
        check=True, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    return out


def local_inventory(
    tmp: Path, groups: dict[str, dict[str, dict[str, Any]]], **variables: Any
) -> Path:
    """An inventory whose hosts are all this machine, each under its own prefix."""
    root = tmp / "root"
    base: dict[str, Any] = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "appliance_prefix": f"{root}/{{{{ inventory_hostname }}}}",
        # Nothing is installed or started by the role itself in these tests.
        "appliance_engine_install": False,
        "appliance_engine_manage_service": False,
        "appliance_engine_create_user": False,
        "appliance_engine_python": sys.executable,
        "appliance_gateway_install": False,
        "appliance_gateway_manage_service": False,
        "appliance_gateway_create_user": False,
        "appliance_gateway_venv": str(VENV_BIN.parent),
        "appliance_egress_lockdown_install": False,
        "appliance_egress_lockdown_manage_service": False,
        "appliance_egress_lockdown_validate": shutil.which("nft") is not None,
    }
    base.update(variables)
    inventory = {
        "all": {
            "vars": base,
            "children": {name: {"hosts": hosts} for name, hosts in groups.items()},
        }
    }
    path = tmp / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory, sort_keys=False), encoding="utf-8")
    return path


@dataclass(frozen=True)
class PlaybookRun:
    returncode: int
    output: str

    def recap(self) -> dict[str, dict[str, int]]:
        return recap(self.output)


def run_playbook(
    playbook: Path,
    inventory: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    wrapper: list[str] | None = None,
) -> PlaybookRun:
    """``wrapper`` prefixes the command (e.g. ``["unshare", "-n"]``: no route out)."""
    environment = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ANSIBLE_DIR / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_LOCAL_TEMP": str(inventory.parent / ".ansible-tmp"),
        "ANSIBLE_REMOTE_TEMP": str(inventory.parent / ".ansible-tmp"),
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        **(env or {}),
    }
    result = subprocess.run(
        [*(wrapper or []), str(VENV_BIN / "ansible-playbook"), "-i", str(inventory),
         str(playbook), *extra],
        capture_output=True, text=True, env=environment, timeout=timeout, cwd=ANSIBLE_DIR,
    )  # fmt: skip
    return PlaybookRun(result.returncode, result.stdout + result.stderr)


_RECAP = re.compile(r"^(\S+)\s+:\s+(.*)$")


def recap(output: str) -> dict[str, dict[str, int]]:
    """``{host: {"ok": n, "changed": n, "failed": n, ...}}`` from the PLAY RECAP."""
    hosts: dict[str, dict[str, int]] = {}
    in_recap = False
    for line in output.splitlines():
        if line.startswith("PLAY RECAP"):
            in_recap = True
            continue
        match = _RECAP.match(line) if in_recap else None
        if match:
            counts = dict(part.split("=") for part in match.group(2).split())
            hosts[match.group(1)] = {key: int(value) for key, value in counts.items()}
    return hosts


def unit_directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a systemd unit, all values per key (sections merged)."""
    directives: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith(("#", "[")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        directives.setdefault(key, []).append(value)
    return directives
