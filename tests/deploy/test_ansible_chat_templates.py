"""The engine role writes the chat templates of the planner's ansible-vars output where
the unit's --chat-template points, byte for byte (the variables carry them in raw, so
Ansible does not render their Jinja), and refuses a plan that names one it lacks."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from appliance.planner.profiles import ENGINE_CHAT_TEMPLATE_DIR, read_chat_template
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
"""
TEMPLATE = "tool_chat_template_deepseekr1.jinja"


def _run(tmp: Path, *extra: str, **host: object) -> tuple[Path, str, int, str]:
    plan = plan_vars(tmp, "-m", "deepseek-r1", "--gpu", "h200")
    inventory = local_inventory(
        tmp, {"appliance_engine": {"gpu-0": dict(host)}}, appliance_engine_api_key="s3cret"
    )
    playbook = tmp / "engine.yml"
    playbook.write_text(PLAYBOOK, encoding="utf-8")
    run = run_playbook(playbook, inventory, "-e", f"@{plan}", *extra)
    root = tmp / "root" / "gpu-0"
    unit = root / "etc/systemd/system/appliance-engine-head.service"
    argv = shlex.split(unit_directives(unit.read_text())["ExecStart"][0]) if unit.exists() else []
    flag = argv[argv.index("--chat-template") + 1] if "--chat-template" in argv else ""
    return root, flag, run.returncode, run.output


def test_the_template_lands_where_the_unit_points(tmp_path: Path) -> None:
    root, flag, returncode, output = _run(tmp_path)
    assert returncode == 0, output
    assert flag == f"{ENGINE_CHAT_TEMPLATE_DIR}/{TEMPLATE}"
    written = root / flag.lstrip("/")
    assert written.read_text(encoding="utf-8") == read_chat_template(TEMPLATE)
    assert oct(written.stat().st_mode & 0o777) == "0o644"


def test_a_site_directory_moves_file_and_flag_together(tmp_path: Path) -> None:
    root, flag, returncode, output = _run(
        tmp_path, appliance_engine_chat_template_dir="/srv/appliance/templates"
    )
    assert returncode == 0, output
    assert flag == f"/srv/appliance/templates/{TEMPLATE}"
    assert (root / flag.lstrip("/")).read_text(encoding="utf-8") == read_chat_template(TEMPLATE)
    assert not (root / ENGINE_CHAT_TEMPLATE_DIR.lstrip("/")).exists()


def test_a_plan_without_its_template_is_refused(tmp_path: Path) -> None:
    empty = tmp_path / "no-templates.yml"
    empty.write_text(yaml.safe_dump({"appliance_engine_chat_templates": {}}))
    _, _, returncode, output = _run(tmp_path, "-e", f"@{empty}")
    assert returncode != 0
    assert "use the variables of `appliance plan --format ansible-vars` unchanged" in output
