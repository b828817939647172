"""``make deploy``'s script: refuses the example inventory and a missing one, and plans
from the inventory's engine group."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from tests.deploy.ansible_harness import ANSIBLE_DIR, REPO, ansible_available

pytestmark = pytest.mark.skipif(not ansible_available(), reason="ansible-core not installed")

SCRIPT = REPO / "scripts/ansible-deploy.sh"


def _deploy(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT)], capture_output=True, text=True, timeout=60,
        env={**os.environ, "VENV": os.path.dirname(os.path.dirname(sys.executable)), **env},
    )  # fmt: skip


def test_refuses_the_example_inventory():
    result = _deploy(INVENTORY="ansible/inventory/example.yml")
    assert result.returncode == 2
    assert "refusing to deploy to the example inventory" in result.stderr
    assert "ansible-playbook" not in result.stderr


def test_missing_inventory_says_how_to_start(tmp_path):
    result = _deploy(INVENTORY=str(tmp_path / "hosts.yml"))
    assert result.returncode == 2
    assert "cp ansible/inventory/example.yml ansible/inventory/hosts.yml" in result.stderr


def test_plans_from_the_inventory(tmp_path):
    out = tmp_path / "plan.yml"
    subprocess.run(
        [sys.executable, str(REPO / "scripts/ansible_plan_vars.py"),
         "--inventory", str(ANSIBLE_DIR / "inventory/example.yml"), "--output", str(out)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    plan = yaml.safe_load(out.read_text())
    assert plan["appliance_engine_model_name"] == "deepseek-v3"
    assert plan["appliance_engine_nodes"] == 2
    assert plan["appliance_engine_gpus_per_node"] == 8
    head, worker = plan["appliance_engine_node_args"][0], plan["appliance_engine_node_args"][1]
    assert head[head.index("--master-addr") + 1] == "10.0.10.10"  # gpu-0's ansible_host
    assert worker[-1] == "--headless"
